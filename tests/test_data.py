import gzip

import numpy as np
import pytest

import recguard
from recguard.data import ItemMeta, SequenceData, build_dataset, pad_sequences, read_csv, read_recbole, read_user_item
from recguard.errors import DataError


def test_sequence_data_is_immutable_and_fingerprinted():
    d = SequenceData.from_sequences([[1, 2, 3], [3, 2]], num_items=4)
    fp = d.fingerprint()
    with pytest.raises(ValueError):
        d.items[0] = 4
    with pytest.raises(AttributeError):
        d.num_items = 9
    assert SequenceData.from_sequences([[1, 2, 3], [3, 2]], num_items=4).fingerprint() == fp
    assert SequenceData.from_sequences([[1, 2, 3], [3, 1]], num_items=4).fingerprint() != fp
    assert SequenceData.from_sequences([[1, 2, 3], [3, 2]], num_items=5).fingerprint() != fp
    d2 = d.append_users([[4, 4]])
    assert d.fingerprint() == fp and d2.num_users == 3 and d2[2].tolist() == [4, 4]


def test_item_ids_validated():
    with pytest.raises(DataError, match="outside 1..3"):
        SequenceData.from_sequences([[1, 4]], num_items=3)
    with pytest.raises(DataError, match="outside"):
        SequenceData.from_sequences([[0, 1]], num_items=3)


def test_leave_one_out_split():
    d = SequenceData.from_sequences([[1, 2, 3, 4, 5], [2, 3], [5, 4, 3]], num_items=5)
    s = d.split()
    assert s.train[0].tolist() == [1, 2, 3]
    assert s.train[1].tolist() == [2, 3]  # < 3 interactions: training only
    assert s.train[2].tolist() == [5]
    assert s.eval_users.tolist() == [0, 2]
    assert s.valid_target.tolist() == [4, 4] and s.test_target.tolist() == [5, 3]
    xv, yv = s.inputs("valid", 4)
    xt, yt = s.inputs("test", 4)
    assert xv.tolist() == [[0, 1, 2, 3], [0, 0, 0, 5]] and yv.tolist() == [4, 4]
    assert xt.tolist() == [[1, 2, 3, 4], [0, 0, 5, 4]] and yt.tolist() == [5, 3]
    assert d.fingerprint() == s.full.fingerprint()


def test_pad_sequences_truncates_to_most_recent():
    assert pad_sequences([[1, 2, 3], [4]], 2).tolist() == [[2, 3], [0, 4]]
    assert pad_sequences([[1, 2, 3]], 5).tolist() == [[0, 0, 1, 2, 3]]


def test_select_users_and_counts():
    d = SequenceData.from_sequences([[1, 2], [2, 3, 3], [4]], num_items=4)
    sub = d.select_users([2, 0])
    assert [x.tolist() for x in sub] == [[4], [1, 2]]
    assert d.item_counts().tolist() == [0, 1, 2, 2, 1]


def test_user_item_loader_gzip_and_reindex(tmp_path):
    p = tmp_path / "x.txt.gz"
    with gzip.open(p, "wt") as fh:
        fh.write("1 10\n1 30\n2 20\n1 20\n2 10\n")
    d = read_user_item(p)
    assert d.num_items == 3 and d.item_ids == ("", "10", "20", "30")
    assert [s.tolist() for s in d] == [[1, 3, 2], [2, 1]]  # file order within a user


@pytest.mark.parametrize(
    "content,line,match",
    [("1 2\n1 x\n", 2, "integer"), ("1 2\n1 2 3\n", 2, "malformed"), ("1 2\n7\n", 2, "malformed")],
)
def test_user_item_loader_errors_name_the_line(tmp_path, content, line, match):
    p = tmp_path / "bad.txt"
    p.write_text(content)
    with pytest.raises(DataError, match=match) as exc:
        read_user_item(p)
    assert exc.value.line == line and str(p) in str(exc.value)


def test_missing_file_error(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_user_item(tmp_path / "nope.txt")


def test_csv_loader_time_order_tiebreak_filters(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("uid,iid,ts,r\nu1,a,5,5\nu1,b,1,4\nu1,c,5,1\nu2,a,2,5\nu2,b,2,5\nu3,c,1,5\n")
    d = read_csv(p, user_col="uid", item_col="iid", time_col="ts", rating_col="r")
    assert d.user_ids == ("u1", "u2", "u3")
    assert [[d.item_ids[i] for i in s] for s in d] == [["b", "a", "c"], ["a", "b"], ["c"]]  # stable tie-break
    d4 = read_csv(p, user_col="uid", item_col="iid", time_col="ts", rating_col="r", min_rating=4)
    assert [[d4.item_ids[i] for i in s] for s in d4] == [["b", "a"], ["a", "b"], ["c"]]
    core = read_csv(p, user_col="uid", item_col="iid", time_col="ts", k_core=2)
    assert core.user_ids == ("u1", "u2") and core.num_items == 2  # u3 goes, then item c
    with pytest.raises(DataError, match="unknown column 'user'.*uid"):
        read_csv(p, user_col="user", item_col="iid")
    with pytest.raises(DataError, match="no interactions left"):
        read_csv(p, user_col="uid", item_col="iid", rating_col="r", min_rating=6)
    with pytest.raises(DataError, match="min_rating needs"):
        read_csv(p, user_col="uid", item_col="iid", min_rating=3)


def test_csv_bad_timestamp_names_line(tmp_path):
    p = tmp_path / "log.tsv"
    p.write_text("u\ti\tt\n1\t2\t3\n1\t3\tsoon\n")
    with pytest.raises(DataError, match="not a number") as exc:
        read_csv(p, user_col="u", item_col="i", time_col="t")
    assert exc.value.line == 3


def test_recbole_atomic_files(tmp_path):
    (tmp_path / "toy.inter").write_text(
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t300\n1\t2\t5\t100\n2\t10\t3\t50\n"
    )
    (tmp_path / "toy.item").write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n2\tHeat\t1995\tAction Crime\n10\tBabe\t1995\tDrama\n"
    )
    d = read_recbole(tmp_path / "toy.inter", tmp_path / "toy.item")
    assert d.item_ids == ("", "2", "10")  # numeric order of raw ids
    assert [s.tolist() for s in d] == [[1, 2], [2]]
    assert d.meta.titles == ("", "Heat", "Babe") and d.meta.genres[1] == ("Action", "Crime")
    assert d.meta.years.tolist() == [0, 1995, 1995]
    assert recguard.data.load(str(tmp_path / "toy.inter")).fingerprint() == d.fingerprint()


def test_build_dataset_kcore_iterates_to_fixed_point():
    # user c has 2 items; removing item z (1 interaction) drops user b below 2, which drops y
    users = np.array(["a", "a", "b", "b", "c", "c"])
    items = np.array(["x", "y", "y", "z", "x", "y"])
    d = build_dataset(users, items, k_core=2)
    assert d.user_ids == ("a", "c") and d.num_items == 2


def test_registry_embedded_ml100k():
    d = recguard.data.load("ml-100k")
    assert (d.num_users, d.num_items, d.num_interactions) == (943, 1682, 100000)
    assert d.meta.has_titles and d.meta.has_genres
    toy = d.meta.titles.index("Toy Story")
    assert d.item_ids[toy] == "1" and "Animation" in d.meta.genres[toy] and d.meta.years[toy] == 1995
    assert d.fingerprint() == recguard.data.load("ml-100k").fingerprint()


def test_registry_offline_error_says_how_to_fix():
    with pytest.raises(DataError, match="--path"):
        recguard.data.load("ml-1m")
    with pytest.raises(DataError, match="unknown dataset"):
        recguard.data.load("ml-42m")


def test_ml1m_sas_format_with_metadata(tmp_path):
    (tmp_path / "ml-1m.txt").write_text("1 1\n1 2\n2 2\n2 1\n2 3\n")
    (tmp_path / "ml-1m.sas_items.tsv").write_text(
        "sas_item_id\tml1m_movie_id\ttitle\tgenres\n1\t1198\tRaiders (1981)\tAction|Adventure\n"
        "2\t3552\tCaddyshack (1980)\tComedy\n3\t1\tToy Story (1995)\tAnimation\n"
    )
    d = recguard.data.load("ml-1m", path=tmp_path)
    assert d.num_items == 3 and d.meta.genres[1] == ("Action", "Adventure") and d.meta.years.tolist() == [0, 1981, 1980, 1995]


def test_item_meta_take():
    m = ItemMeta(titles=("", "a", "b"), genres=((), ("x",), ("y",)), years=np.array([0, 1, 2]))
    t = m.take(np.array([0, 2, 1]))
    assert t.titles == ("", "b", "a") and t.years.tolist() == [0, 2, 1]


def _fake_archive() -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ml-100k/u.data", "1\t10\t5\t100\n1\t20\t3\t200\n2\t10\t4\t50\n")
        zf.writestr("ml-100k/u.item", "10|Heat (1995)|01-Jan-1995||url|0|1|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0|0|0\n"
                                      "20|Babe (1995)|01-Jan-1995||url|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0\n")
    return buf.getvalue()


class _Resp:
    def __init__(self, payload):
        self.payload = payload

    def read(self):
        return self.payload

    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_download_verifies_checksum_and_caches(monkeypatch, tmp_path):
    import hashlib
    import urllib.request

    from recguard.data import _registry

    payload = _fake_archive()
    monkeypatch.setenv("RECGUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_registry, "_recbole_ml100k", lambda: None)
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=0: _Resp(payload))
    with pytest.raises(DataError, match="checksum mismatch"):
        recguard.data.load("ml-100k", download=True)
    assert not (tmp_path / "cache" / "ml-100k" / "u.data").exists()
    info = _registry._REGISTRY["ml-100k"]
    patched = _registry.DatasetInfo(**{**info.to_dict(), "md5": hashlib.md5(payload).hexdigest()})
    monkeypatch.setitem(_registry._REGISTRY, "ml-100k", patched)
    d = recguard.data.load("ml-100k", download=True)
    assert d.num_users == 2 and d.meta.titles[1] == "Heat (1995)" and d.meta.genres[1] == ("Action", "Crime")
    assert [s.tolist() for s in d] == [[1, 2], [1]]  # user 1: item 10 at t=100, item 20 at t=200
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("offline")))
    assert recguard.data.load("ml-100k", download=False).fingerprint() == d.fingerprint()  # served from the cache


def test_download_failure_explains_offline_use(monkeypatch, tmp_path):
    import urllib.request


    monkeypatch.setenv("RECGUARD_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: (_ for _ in ()).throw(OSError("no route")))
    with pytest.raises(DataError, match="could not download ml-1m.*--path"):
        recguard.data.load("ml-1m", download=True)


def test_recbole_wheel_path(tmp_path):
    import zipfile

    whl = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("recbole/dataset_example/ml-100k/ml-100k.inter",
                    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t5\t3\t1\n1\t6\t3\t2\n")
        zf.writestr("recbole/dataset_example/ml-100k/ml-100k.item",
                    "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n5\tA\t1990\tDrama\n6\tB\t1991\tComedy\n")
    d = recguard.data.load(str(whl))
    assert d.num_items == 2 and d.meta.titles == ("", "A", "B")


def test_amazon_datasets_are_registered_and_read_from_a_path(tmp_path):
    from recguard.errors import DataError

    with pytest.raises(DataError, match="--path"):
        recguard.data.load("amazon-office")
    d = tmp_path / "amazon-office"
    d.mkdir()
    (d / "amazon-office.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\nA\tB01\t0\nA\tB02\t1\nA\tB03\t2\n")
    (d / "amazon-office.item").write_text("item_id:token\ttitle:token_seq\tbrand:token\tcategories:token_seq\n"
                                          "B01\tRed Pen\tAcme\tOffice Pens\nB02\t\tAcme\tOffice Paper\nB03\tStapler\tX\tOffice\n")
    data = recguard.data.load("amazon-office", path=d)
    assert data.name == "amazon-office" and data.num_items == 3 and data.meta.titles[1:] == ("Red Pen", "", "Stapler")
    assert data.meta.genres[2] == ("Office", "Paper")
    assert {i.name for i in recguard.data.list_datasets()} >= {"amazon-office", "amazon-beauty"}
