import csv
import json
import math

from lemon_pl.core.report import EvaluationReport, mean_rows


def report():
    rows = {"heat": {"rel_l2": 0.1, "mse": 2.0}, "kdv": {"rel_l2": 0.3, "mse": 4.0}}
    rows["overall"] = mean_rows(rows)
    return EvaluationReport("test", "family", rows, curve={"0": {"overall": {"rel_l2": 0.5, "mse": 1.0}}},
                            extras={"mode": "few-shot", "adapt_steps": 5, "levels": [1, 2]}, seconds=1.5)


def test_the_overall_row_is_the_mean_of_the_rows():
    r = report()
    assert r.overall == {"rel_l2": 0.2, "mse": 3.0}


def test_written_files_hold_every_row_metric_and_extra(tmp_path):
    r = report()
    csv_path, json_path = r.write(tmp_path)
    payload = json.loads(json_path.read_text())
    assert payload["families"] == r.rows and payload["group"] == "family" and payload["curve"] == r.curve
    assert payload["mode"] == "few-shot" and payload["levels"] == [1, 2] and payload["metrics"] == ["rel_l2", "mse"]
    table = list(csv.DictReader(csv_path.open()))
    assert [t["family"] for t in table] == ["heat", "kdv", "overall"]
    assert float(table[1]["mse"]) == 4.0 and table[0]["mode"] == "few-shot" and "levels" not in table[0]
    assert all(t["seconds"] == "1.500" for t in table)


def test_logged_names_and_printed_table():
    r = report()
    r.rows["kdv"]["mse"] = math.nan
    logged = r.logged()
    assert logged["test/rel_l2"] == 0.2 and logged["test/rel_l2/heat"] == 0.1 and "test/mse/kdv" not in logged
    text = r.format()
    assert "test results (1.5 s)" in text and "few-shot" in text and "k=0: 0.5" in text
