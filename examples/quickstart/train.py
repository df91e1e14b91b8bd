"""Train a tiny model on synthetic readings and register it as overheat@champion."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from scorebus.models.registry import Registry

rng = np.random.default_rng(0)
X = np.column_stack([rng.normal(40, 15, 5000), rng.uniform(0, 100, 5000)]).astype(np.float32)
y = (X[:, 0] + rng.normal(0, 5, 5000) > 65).astype(int)
model = LogisticRegression().fit(X, y)
mv = Registry().register(
    "overheat", model, features=("temperature_c", "humidity"), alias="champion"
)
print(f"registered {mv.ref}")
