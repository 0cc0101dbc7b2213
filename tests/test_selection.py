"""Choosing the ranking weights on validation: the rule, its guards, and a whole run through the CLI."""

from __future__ import annotations

import json
import math

import lightning as L
import pytest

from negseq.data import FeedbackDataModule
from negseq.errors import ConfigError
from negseq.fit import main as fit_main
from negseq.training.module import NegSeqModule
from negseq.training.selection import candidates, check_selection, choose, noise_bar, set_weights

FAST = ["--model.dim", "16", "--data.max_len", "10", "--trainer.max_epochs", "3", "--trainer.enable_progress_bar", "false"]


def test_choose_takes_the_best_validation_value_and_the_smaller_weight_on_a_tie():
    results = [{"val/m": 0.1}, {"val/m": 0.3}, {"val/m": 0.3}, {"val/m": 0.2}]
    assert choose(candidates([0.0, 0.5, 1.0, 2.0], [0.0]), results, "val/m") == 1
    assert choose(candidates([2.0, 1.0, 0.5, 0.0], [0.0]), results, "val/m") == 2  # the tie again: 0.5 < 1.0 wherever it is listed
    assert choose(candidates([0.0], [2.0, 1.0, 0.5, 0.0]), results, "val/m") == 2  # the same for the demotion weight


def test_choose_with_a_tolerance_keeps_ndcg_p_within_it_of_the_smallest_weights():
    options = candidates([0.0, 1.0], [0.0, 2.0])  # (0, 0), (0, 2), (1, 0), (1, 2)
    results = [
        {"val/delta": 0.10, "val/p": 0.100},
        {"val/delta": 0.20, "val/p": 0.0985},  # 1.5 % below the reference (0, 0): eligible at 2 %
        {"val/delta": 0.30, "val/p": 0.0970},  # 3 % below: not eligible at 2 %
        {"val/delta": 0.15, "val/p": 0.110},
    ]
    assert choose(options, results, "val/delta") == 2
    assert choose(options, results, "val/delta", tolerance=0.02, keep="val/p") == 1
    assert choose(options, results, "val/delta", tolerance=0.0, keep="val/p") == 3  # only NDCG_p at least the reference's
    assert options[1] == {"negative_scoring": 0.0, "dislike_demotion": 2.0, "polarity_prior": 0.0, "sign_scoring": 0.0}


def test_candidates_are_every_combination_with_every_weight_named():
    assert candidates([0.0], [0.0], [0.0, 1.0], [2.0]) == [
        {"negative_scoring": 0.0, "dislike_demotion": 0.0, "polarity_prior": 0.0, "sign_scoring": 2.0},
        {"negative_scoring": 0.0, "dislike_demotion": 0.0, "polarity_prior": 1.0, "sign_scoring": 2.0},
    ]
    assert candidates([0.5]) == [{"negative_scoring": 0.5, "dislike_demotion": 0.0, "polarity_prior": 0.0, "sign_scoring": 0.0}]  # a weight not listed is 0


def test_choose_minimises_a_disliked_target_monitor():
    results = [{"val/hr_n@10": 0.3}, {"val/hr_n@10": 0.1}, {"val/hr_n@10": 0.1}, {"val/hr_n@10": 0.2}]
    assert choose(candidates([0.0], [0.0], [0.0, 1.0, 2.0, 4.0]), results, "val/hr_n@10") == 1  # the lowest, the smaller of the tie
    assert choose(candidates([0.0], [0.0], [4.0, 2.0, 1.0, 0.0]), results, "val/hr_n@10") == 2  # 1.0 < 2.0 wherever it is listed
    assert choose(candidates([0.0], [0.0], [0.0, 1.0, 2.0, 4.0]), [{"val/ndcg_n@10": r["val/hr_n@10"]} for r in results], "val/ndcg_n@10") == 1
    assert choose(candidates([0.0], [0.0], [0.0, 1.0, 2.0, 4.0]), [{"val/hr_p@10": r["val/hr_n@10"]} for r in results], "val/hr_p@10") == 0


def test_choose_within_noise_keeps_hr_p_within_z_binomial_errors_of_the_smallest_weights():
    # the reference (prior 0): HR_p 0.4 over 96 liked-target users, a standard error sqrt(0.4 * 0.6 / 96) = 0.05; z = 2: bar 0.3
    reference = {"val/hr_p@10": 0.4, "val/hr_n@10": 0.30, "val/n_users_pos": 96}
    assert noise_bar(reference, "val/hr_p@10", 2.0) == pytest.approx(0.3, abs=1e-12)
    assert noise_bar(reference, "val/hr_p@10", 0.0) == 0.4
    assert noise_bar({**reference, "val/n_users_pos": 0}, "val/hr_p@10", 2.0) == -math.inf  # no liked target: nothing to keep
    options = candidates([0.0], [0.0], [4.0, 2.0, 1.0, 0.5, 0.0])  # the reference listed last
    results = [
        {"val/hr_p@10": 0.301, "val/hr_n@10": 0.15, "val/n_users_pos": 96},  # just above the bar of z = 2
        {"val/hr_p@10": 0.299, "val/hr_n@10": 0.05, "val/n_users_pos": 96},  # just below it: the lowest HR_n, kept out
        {"val/hr_p@10": 0.350, "val/hr_n@10": 0.20, "val/n_users_pos": 96},
        {"val/hr_p@10": 0.370, "val/hr_n@10": 0.20, "val/n_users_pos": 96},  # as low as 1.0's: the smaller weight wins
        reference,
    ]
    assert choose(options, results, "val/hr_n@10") == 1
    assert choose(options, results, "val/hr_n@10", within_noise=2.0, hit_rate="val/hr_p@10") == 0
    assert choose(options, results, "val/hr_n@10", within_noise=1.2, hit_rate="val/hr_p@10") == 3  # bar 0.34
    # z = 0: no candidate's HR_p reaches the reference's, which is eligible however it does on the monitor
    assert choose(options, results, "val/hr_n@10", within_noise=0.0, hit_rate="val/hr_p@10") == 4
    with pytest.raises(ConfigError, match="val/hr_p@5 is not a validation metric"):
        choose(options, results, "val/hr_n@10", within_noise=1.0, hit_rate="val/hr_p@5")


def test_choose_rejects_a_monitor_validation_does_not_log():
    with pytest.raises(ConfigError, match="val/nope.*validation logs \\['val/m'\\]"):
        choose(candidates([0.0, 1.0], [0.0]), [{"val/m": 0.1}, {"val/m": math.nan}], "val/nope")


def test_selection_guards():
    pnfrec, sasrec_p = NegSeqModule(20, 20, alpha=0.45), NegSeqModule(20, 20, alpha=0.0, beta=0.0)
    check_selection(candidates([0.0, 0.5], [0.0]), "val/delta_ndcg@10", pnfrec, "all")
    check_selection(candidates([0.0, 0.5], [0.0]), "val/ndcg_p@10", pnfrec, "positive")  # a positive-only monitor needs no negative targets
    check_selection(candidates([0.0], [0.0, 1.0]), "val/delta_ndcg@10", sasrec_p, "all")  # demotion reads the item table only
    with pytest.raises(ConfigError, match="alpha > 0"):
        check_selection(candidates([0.0, 0.5], [0.0]), "val/delta_ndcg@10", sasrec_p, "all")
    with pytest.raises(ConfigError, match="--data.validation_targets all"):
        check_selection(candidates([0.0, 0.5], [0.0]), "val/delta_ndcg@10", pnfrec, "positive")


def test_fit_chooses_lambda_on_validation_and_tests_with_it(tmp_path, tiny_log):
    root = tmp_path / "runs"
    metrics = fit_main([
        "--trainer.default_root_dir", str(root), *FAST, "--data.path", tiny_log, "--data.threshold", "4",
        "--data.validation_targets", "all", "--select_negative_scoring", "[0.0, 0.5, 5.0]",
    ])
    (run_dir,) = root.iterdir()
    selection = json.loads((run_dir / "selection.json").read_text())
    assert selection["monitor"] == "val/delta_ndcg@10"
    values = [candidate["val/delta_ndcg@10"] for candidate in selection["candidates"]]
    assert len(set(values)) > 1  # lambda changes the ranking
    chosen = selection["candidates"][values.index(max(values))]
    assert selection["chosen"]["negative_scoring"] == metrics["negative_scoring"] == chosen["negative_scoring"]
    assert metrics["val/n_users_neg"] > 0
    for key in ("val/ndcg_p@10", "val/hr_n@10", "val/delta_ndcg@10"):
        assert metrics[key] == pytest.approx(chosen[key], abs=1e-7)
    # every candidate's test metrics, reported beside the choice: the chosen one's are the test's (the same ranking, the same users)
    on_disk = json.loads((run_dir / "metrics.json").read_text())
    assert on_disk["ranking_curve"] == metrics["ranking_curve"]
    assert [point["weights"] for point in metrics["ranking_curve"]] == candidates([0.0, 0.5, 5.0], [0.0], [0.0])
    (point,) = [point for point in metrics["ranking_curve"] if point["weights"] == selection["chosen"]]
    for key in ("test/hr_p@10", "test/ndcg_p@10", "test/hr_n@10", "test/delta_ndcg@10", "test/n_users_pos"):
        assert point[key] == metrics[key], key

    # the test metrics are the best checkpoint's, ranked with the chosen lambda, which the checkpoint carries
    model = NegSeqModule.load_from_checkpoint(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    assert float(model.model.negative_scoring) == metrics["negative_scoring"] and model.hparams.negative_scoring == 0.0
    data = FeedbackDataModule(path=tiny_log, threshold=4, max_len=10, validation_targets="all")
    (again,) = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(model, datamodule=data, verbose=False)
    for key in ("test/hr_p@10", "test/ndcg_n@10", "test/delta_ndcg@10"):
        assert again[key] == pytest.approx(metrics[key], abs=1e-7)
    # and each point of the curve is that checkpoint tested with the point's weights (the chosen point is the test itself)
    for point in metrics["ranking_curve"]:
        set_weights(model, point["weights"])
        (tested,) = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False).test(model, datamodule=data, verbose=False)
        for key in ("test/hr_p@10", "test/hr_n@10", "test/delta_ndcg@10"):
            assert point[key] == pytest.approx(tested[key], abs=1e-7), (point["weights"], key)


def test_selection_without_negative_targets_stops_before_training(tmp_path, tiny_log):
    with pytest.raises(ConfigError, match="validation_targets all"):
        fit_main(["--trainer.default_root_dir", str(tmp_path / "runs"), *FAST, "--data.path", tiny_log, "--select_negative_scoring", "[0.0, 1.0]"])
    assert not list((tmp_path / "runs").glob("*/checkpoints"))


def test_choose_with_a_suppression_floor_ranks_only_the_responsive_candidates():
    options = candidates([0.0], [0.0, 1.0, 2.0, 3.0])
    results = [
        {"val/p": 0.100, "val/sup": 0.0},
        {"val/p": 0.099, "val/sup": 0.2},
        {"val/p": 0.095, "val/sup": 0.35},  # the first to reach 0.3
        {"val/p": 0.090, "val/sup": 0.50},
    ]
    assert choose(options, results, "val/p") == 0
    assert choose(options, results, "val/p", floor=("val/sup", 0.3)) == 2  # the best NDCG_p among those reaching it
    assert choose(options, results, "val/p", floor=("val/sup", 0.6)) == 3  # none reaches it: the most suppressing
    # the tolerance applies first: within 6 % of the reference's NDCG_p, (0, 3) is out and nothing reaches 0.4
    assert choose(options, results, "val/p", tolerance=0.06, keep="val/p", floor=("val/sup", 0.4)) == 2
    with pytest.raises(ConfigError, match="val/missing"):
        choose(options, results, "val/p", floor=("val/missing", 0.3))


def test_fit_with_a_suppression_floor_validates_the_counterfactual_dislike(tmp_path, tiny_log):
    root = tmp_path / "runs"
    metrics = fit_main([
        "--trainer.default_root_dir", str(root), *FAST, "--data.path", tiny_log, "--data.threshold", "4",
        "--select_dislike_demotion", "[0.0, 50.0]", "--select_monitor", "val/ndcg_p@10", "--select_min_suppression", "0.5",
    ])
    (run_dir,) = root.iterdir()
    selection = json.loads((run_dir / "selection.json").read_text())
    assert selection["min_suppression"] == 0.5
    suppression = [candidate["val/neighbour_suppression@10"] for candidate in selection["candidates"]]
    assert suppression[0] == 0.0 and all(math.isfinite(value) for value in suppression)  # PNFRec's own ranking ignores the dislike
    assert [candidate["val/list_change@10"] > 0 for candidate in selection["candidates"]] == [False, True]
    reached = [index for index, value in enumerate(suppression) if value >= 0.5]
    if reached:  # the best NDCG_p among them
        ndcg = [selection["candidates"][index]["val/ndcg_p@10"] for index in reached]
        chosen = reached[ndcg.index(max(ndcg))]
    else:  # the most suppressing
        chosen = suppression.index(max(suppression))
    assert metrics["dislike_demotion"] == selection["chosen"]["dislike_demotion"] == selection["candidates"][chosen]["dislike_demotion"]
    assert math.isfinite(metrics["test/neighbour_suppression@10"])  # validation's counterfactual (selection.json), the test's own


@pytest.mark.parametrize(("argument", "value", "message"), [
    ("--select_tolerance", "1.5", "--select_tolerance must be in \\[0, 1\\), got 1.5"),
    ("--select_tolerance", "-0.1", "--select_tolerance must be in \\[0, 1\\), got -0.1"),
    ("--select_min_suppression", "1.2", "--select_min_suppression must be at most 1"),
    ("--select_within_noise", "-1", "--select_within_noise must be >= 0 \\(standard errors of validation HR_p@k\\), got -1"),
    ("--select_polarity_prior", "[0.0, -1.0]", "selection candidate .*polarity_prior must be >= 0"),
])
def test_out_of_range_selection_arguments_stop_before_training(tmp_path, tiny_log, argument, value, message):
    with pytest.raises(ConfigError, match=message):
        fit_main(["--trainer.default_root_dir", str(tmp_path / "runs"), *FAST, "--data.path", tiny_log, argument, value])
    assert not list((tmp_path / "runs").glob("*/checkpoints"))


def test_split_none_refuses_a_choice_of_the_prior_before_training(tmp_path, tiny_log):
    """Without validation there is nothing to choose the prior on: set --model.polarity_prior (one value is accepted)."""
    with pytest.raises(ConfigError, match="--select_polarity_prior chooses on validation, which --data.split none has not: set --model.polarity_prior"):
        fit_main(["--trainer.default_root_dir", str(tmp_path / "runs"), *FAST, "--data.path", tiny_log, "--data.split", "none", "--select_polarity_prior", "[0.0, 1.0]"])
    assert not list((tmp_path / "runs").glob("*/checkpoints"))
