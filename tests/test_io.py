from prunequant.io import read_json, write_json


def test_json_round_trip_with_sorted_keys(tmp_path):
    path = tmp_path / "deep" / "m.json"
    write_json({"b": 1, "a": [1.5, "x"]}, path)
    assert read_json(path) == {"a": [1.5, "x"], "b": 1}
    assert path.read_text().startswith('{\n  "a"')  # the same record gives the same bytes
