"""``python -m models``: rebuild the shipped demo models and cards."""

from models.demo import build_demo_models

for path in build_demo_models():
    print(path)
