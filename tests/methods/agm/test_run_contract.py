"""AGM keeps the run contract of every method: kill -9 after the first checkpoint, resume, bit-identical end."""

SMALL = ["train.steps=60", "train.ckpt_every=20", "train.log_every=10", "train.batch_size=32", "model.hidden=16",
         "model.depth=2", "data.n_train=256", "data.n_test=128", "sample.steps=5", "eval.n_samples=64", "eval.max_samples=64"]


def test_agm_kill_resume_sample_eval(kill_resume_contract):
    kill_resume_contract(["agm", "train", "--config", "toy", *SMALL], ["agm", "sample", "--n", "20"], ["agm", "eval"])

