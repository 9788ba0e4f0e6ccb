"""``python -m worker.models``: rebuild the demo models and cards in the built-in repository."""

from worker.models.demo import build_demo_models

for path in build_demo_models():
    print(path)
