"""The two-level agents: decisions, ±1 rewards, a real learning loop, and the concentrator's parameters."""

from __future__ import annotations

import numpy as np
import pytest

from gridledger.analytics.rl import (
    LOGIT_SCALE,
    STATE,
    ConcentratorAgent,
    MeterAgent,
    detector_prior,
    learn_prior,
    run_online,
)

DAY = np.full(24, 10.0)


def test_the_prior_reproduces_the_detector():
    agent = ConcentratorAgent().agent("M1")
    for logit in (-3.0, -0.1, 0.2, 7.0):
        assert agent.act(agent.state(logit, DAY)) == int(logit > 0)


def test_rewards_are_plus_one_for_right_and_minus_one_for_wrong():
    agent = ConcentratorAgent().agent("M1")
    phi = agent.state(2.0, DAY)
    assert agent.learn(phi, 1, 1, DAY) == 1
    assert agent.learn(phi, 1, 0, DAY) == -1
    assert agent.learn(phi, 0, 0, DAY) == 1


def test_value_is_bounded_like_the_rewards():
    agent = MeterAgent("M1", np.array([5.0, 5.0, 0, 0, 0]))
    assert -1.0 <= agent.value(agent.state(-10.0, DAY)) < 0.0 < agent.value(agent.state(10.0, DAY)) <= 1.0


def test_learning_corrects_a_biased_detector():
    """A detector that always says 'tampered' (log-odds +1) on honest days: the agent learns to say honest."""
    n_days = 60
    days = np.full((1, n_days, 24), 10.0)
    logits = np.full((1, n_days), 1.0)
    labels = np.zeros((1, n_days), dtype=np.int8)
    result = run_online(ConcentratorAgent(), ["M1"], days, logits, labels)
    decisions = result.decisions[0]
    assert decisions[0] == 1  # it starts as the detector
    assert (decisions[-20:] == 0).all()  # and has learned from the -1 rewards
    assert result.rewards > 0


def test_without_feedback_nothing_is_learned():
    days = np.full((1, 30, 24), 10.0)
    logits = np.full((1, 30), 1.0)
    result = run_online(ConcentratorAgent(), ["M1"], days, logits, None)
    assert (result.decisions == 1).all() and result.rewards == 0


def test_missing_days_are_skipped():
    days = np.full((1, 3, 24), 10.0)
    days[0, 1] = np.nan
    result = run_online(ConcentratorAgent(), ["M1"], days, np.zeros((1, 3)), np.zeros((1, 3), dtype=np.int8))
    assert result.decisions[0].tolist() == [0, -1, 0] and np.isnan(result.scores[0, 1])


def test_the_honest_reference_learns_only_from_honest_feedback():
    agent = ConcentratorAgent().agent("M1")
    phi = agent.state(0.0, DAY)
    assert phi[2:].tolist() == [0.0, 0.0, 0.0]
    agent.learn(phi, 0, 0, DAY)
    agent.learn(agent.state(0.0, DAY * 0.1), 0, 1, DAY * 0.1)  # a tampered day must not enter the reference
    half = agent.state(0.0, DAY * 0.5)
    assert half[2] == pytest.approx(-np.log((DAY.sum() * 0.5 + 1) / (DAY.sum() + 1)))
    assert half[3] == 0.0


def test_adjust_adopts_the_concentrators_parameters_unless_worse_on_replay():
    learner = MeterAgent("learner", np.array([1.0, 0.0, 0, 0, 0]), mix=1.0)  # always 'tampered'
    phi = learner.state(0.0, DAY)
    learner.learn(phi, learner.act(phi), 0, DAY)  # its replay holds one honest day
    assert learner.adjust(np.array([-1.0, 0.0, 0, 0, 0]))  # better on replay: adopted
    assert not learner.adjust(np.array([5.0, 0.0, 0, 0, 0]))  # worse: kept
    np.testing.assert_array_equal(learner.weights, [-1.0, 0.0, 0, 0, 0])
    assert learner.adjust(np.array([-2.0, 0.0, 0, 0, 0]))  # as good: adopted too
    np.testing.assert_array_equal(learner.weights, [-2.0, 0.0, 0, 0, 0])


def test_the_concentrator_learns_from_every_meters_feedback():
    """Thirty meters' first labelled day moves the global parameters as far as 30 days of one meter would: where
    the prior asks for log-odds above 1, a neighbourhood whose tampered days score 0.5 is flagged from day 2 on
    (but for the first meter, whose adjustment came when the concentrator had learned from one day only)."""
    prior = np.array([-0.3, 1.5, 0, 0, 0])  # flags above log-odds 1
    days, logits = np.full((30, 3, 24), 10.0), np.full((30, 3), 0.5)
    labels = np.ones((30, 3), dtype=np.int8)
    concentrator = ConcentratorAgent(prior=prior)
    result = run_online(concentrator, [f"M{k}" for k in range(30)], days, logits, labels)
    assert (result.decisions[:, 0] == 0).all() and result.decisions[:, 1].mean() > 0.9
    assert (result.decisions[:, 2] == 1).all()
    assert _threshold(concentrator.global_parameters()) < 0.5 < _threshold(prior)
    alone = run_online(ConcentratorAgent(prior=prior), ["M0"], days[:1], logits[:1], labels[:1])
    assert alone.decisions[0, 1] == 0  # one meter's own first day is not enough


def test_global_parameters_start_at_the_prior_and_are_a_copy():
    concentrator = ConcentratorAgent(prior=np.ones(5))
    params = concentrator.global_parameters()
    params[0] = 9.0
    np.testing.assert_array_equal(concentrator.global_parameters(), np.ones(5))


def _episode(share: float, seed: int) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Ten meters over 40 days, a share of them tampered; the detector's log-odds are noisy but right on average."""
    rng = np.random.default_rng(seed)
    labels = (rng.random((10, 40)) < share).astype(np.int8)
    logits = np.where(labels == 1, 1.5, -1.5) + rng.normal(0, 1.5, labels.shape)
    return [f"M{k}" for k in range(10)], np.full((10, 40, 24), 10.0), logits, labels


def _threshold(prior: np.ndarray) -> float:
    """The detector log-odds above which an agent at ``prior`` flags a day (energy and shape terms at 0)."""
    bias, logit = prior[STATE.index("bias")], prior[STATE.index("detector_logit")]
    return -LOGIT_SCALE * bias / logit


def test_learned_prior_pools_the_episodes_in_any_order():
    """The prior of draws at 50 % and 10 % theft does not depend on their order and lies between what each draw
    alone teaches (chaining them instead left the prior at the last draw's, the 10 % one's, threshold)."""
    common, rare = _episode(0.5, 1), _episode(0.1, 2)
    pooled = learn_prior([common, rare])
    np.testing.assert_allclose(learn_prior([rare, common]), pooled)
    low, high = _threshold(learn_prior([common])), _threshold(learn_prior([rare]))
    assert low + 0.3 < _threshold(pooled) < high - 0.3


def test_learned_prior_without_feedback_is_the_detectors():
    meters, days, logits, labels = _episode(0.5, 1)
    np.testing.assert_array_equal(learn_prior([]), detector_prior())
    np.testing.assert_array_equal(learn_prior([(meters, days, logits, np.full_like(labels, -1))]), detector_prior())


def test_mean_interval_is_students_t():
    from gridledger.analytics.metrics import mean_interval

    i = mean_interval([1.0, 2.0, 3.0])
    # t(0.975, 2) = 4.3027; s = 1; half-width 4.3027 / sqrt(3)
    assert i.mean == 2.0 and i.high - i.mean == pytest.approx(4.302653 / 3**0.5, rel=1e-6)
    assert i.as_dict()["runs"] == [1.0, 2.0, 3.0] and "95 % CI" in str(i)
    with pytest.raises(ValueError, match="at least 2 runs"):
        mean_interval([1.0])
