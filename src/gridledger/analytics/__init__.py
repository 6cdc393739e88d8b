"""Edge and fog analytics: forecasting, power quality, energy-theft detection with RL, and PoEf scores.

Olivares-Rojas et al. (2023), §3.2 and §4.2: every smart meter (edge) and data concentrator (fog) runs its own
analytics; their results feed the Proof-of-Efficiency consensus. See docs/analytics.md.
"""

from .data import DataError, DayCube, Readings, load_readings, to_cube, validate_readings
from .efficiency import EfficiencyScore, efficiency_score
from .forecast import ForecastSettings, evaluate_forecasts
from .power_quality import Limits, PowerQualityModel, evaluate_power_quality, flag_events
from .prediction_store import PredictionStore
from .rl import ConcentratorAgent, MeterAgent, run_online
from .scorecards import CheckRates, audit_reward, evaluate_check, period_score, period_scores
from .theft import TheftModel, TheftSettings, detect, holdout_evaluation, train
from .theft_attacks import ATTACKS, inject_theft

__all__ = [
    "ATTACKS",
    "CheckRates",
    "ConcentratorAgent",
    "DataError",
    "DayCube",
    "EfficiencyScore",
    "ForecastSettings",
    "Limits",
    "MeterAgent",
    "PowerQualityModel",
    "PredictionStore",
    "Readings",
    "TheftModel",
    "TheftSettings",
    "audit_reward",
    "detect",
    "efficiency_score",
    "evaluate_check",
    "evaluate_forecasts",
    "evaluate_power_quality",
    "flag_events",
    "holdout_evaluation",
    "inject_theft",
    "load_readings",
    "period_score",
    "period_scores",
    "run_online",
    "to_cube",
    "train",
    "validate_readings",
]
