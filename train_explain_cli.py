"""The `train-explain` command that `pip install .` puts on PATH: runs train_explain.py exactly as
`python train_explain.py` does (same flags, --help and --version answered before torch is imported, the same
OpenMP wait policy), wherever the command is started from."""
import importlib.util
import runpy
import sys


def main() -> None:
    script = importlib.util.find_spec("train_explain").origin
    sys.argv[0] = script
    runpy.run_path(script, run_name="__main__")  # ends with sys.exit(main(...)), as the script does


if __name__ == "__main__":
    main()
