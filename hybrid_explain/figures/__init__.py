"""The pipeline's figures, one module per family (base: what every figure shares). Drawn off screen: the
pipeline writes PNG files, in drawing processes that have no display."""
import matplotlib

matplotlib.use("Agg")
