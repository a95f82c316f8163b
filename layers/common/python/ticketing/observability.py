"""The Powertools Logger and Metrics every function shares (service and namespace come
from the POWERTOOLS_* settings in template.yaml's Globals)."""

from __future__ import annotations

import warnings

from aws_lambda_powertools import Logger, Metrics

# A request that records no metric is normal here; Powertools would warn on each one.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger()
metrics = Metrics()
