"""The shipped hparams (package data) and the repository's copies for users must not drift apart."""

from pathlib import Path

from easyedit_split.base.defaults import hparams_file_name, packaged_hparams_dir
from easyedit_split.base.hparams_io import load_yaml
from easyedit_split.easyedit.registry import get_hparams_class

REPO_COPY = Path(__file__).resolve().parent.parent / "hparams" / "smollm2"


def test_repository_copies_equal_the_shipped_files():
    shipped = packaged_hparams_dir()
    names = sorted(p.name for p in shipped.glob("*.yaml"))
    assert names == sorted(p.name for p in REPO_COPY.glob("*.yaml"))
    for name in names:
        assert (shipped / name).read_bytes() == (REPO_COPY / name).read_bytes(), name


def test_every_shipped_training_file_loads():
    for method in ("split", "sft", "reps", "dpo", "diffmean"):
        for form in (("vector",) if method == "diffmean" else ("vector", "lora", "local_weight")):
            path = packaged_hparams_dir() / hparams_file_name(method, form)
            data = load_yaml(path)
            data["alg_name"] = method
            hp = get_hparams_class(method).from_dict(data, source=str(path))
            assert hp.form == form
