"""Which member of the ROCKET family to put beside the network (BASELINE): MiniRocket against MultiRocket-Hydra,
test accuracy and seconds (fit + predict) on each set's own split (docs/measurements/baseline.md).

    python bench/rocket_family.py ArrowHead UnitTest PickupGestureWiimoteZ_eq GunPoint ItalyPowerDemand ACSF1

The names are aeon's data sets (load_classification: those aeon ships in its wheel load offline). Each classifier is
aeon's own, with its defaults, random_state 0 and one thread. The first fit of each classifier in a process on a
cold numba cache includes its compilation (see the docs page); run twice to see the warm seconds.
"""
import argparse
import time


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", help="aeon data set names")
    args = parser.parse_args()
    from aeon.classification.convolution_based import MiniRocketClassifier, MultiRocketHydraClassifier
    from aeon.datasets import load_classification

    for name in args.datasets:
        X_train, y_train = load_classification(name, split="train")
        X_test, y_test = load_classification(name, split="test")
        for classifier in (MiniRocketClassifier, MultiRocketHydraClassifier):
            started = time.perf_counter()
            fitted = classifier(random_state=0, n_jobs=1).fit(X_train, y_train)
            accuracy = (fitted.predict(X_test) == y_test).mean()
            print(f"{name} {X_train.shape} {classifier.__name__}: accuracy {accuracy:.3f}, "
                  f"{time.perf_counter() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
