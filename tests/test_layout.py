"""Every metric name comes from one function of k."""

from __future__ import annotations

from negseq import layout


def test_metric_names_follow_k_and_keep_the_default_interface():
    assert layout.metric_keys("test", 10) == (
        "test/hr_p@10", "test/ndcg_p@10", "test/mrr_p@10", "test/hr_n@10", "test/ndcg_n@10", "test/mrr_n@10",
        "test/delta_hr@10", "test/delta_ndcg@10", "test/coverage@10", "test/list_change@10", "test/neighbour_suppression@10",
        "test/n_users_pos", "test/n_users_neg",
    )
    assert "val/list_change@10" not in layout.metric_keys("val", 10)  # responsiveness is measured at test only
    assert layout.metric_names(5)[0] == "hr_p@5" and layout.monitor(5) == "val/ndcg_p@5"
    assert layout.selection_monitor(3) == "val/delta_ndcg@3"
    assert [key for _, key, _, _ in layout.table_rows(5)][:2] == ["test/hr_p@5", "test/ndcg_p@5"]


def test_extra_cutoffs_come_after_k_once_each():
    assert layout.cutoffs(10, [20, 5, 10]) == (10, 5, 20)
    keys = layout.metric_keys("val", 10, [5])
    assert keys.count("val/n_users_pos") == 1 and "val/hr_p@5" in keys and keys[0] == "val/hr_p@10"


def test_run_cutoff_reads_k_from_metric_keys():
    assert layout.run_cutoff(["test/hr_p@5", "best_epoch"]) == 5
    assert layout.run_cutoff(layout.metric_keys("test", 5, [3, 20])) == 5  # several: k's come first
    assert layout.run_cutoff(["best_epoch"]) == 10
