"""Stage `train`: the architecture named by the `model` param, trained on the shards (`dvc exp run -S model=k1c2`)."""
import json

from musictag.errors import run_main
from musictag.files import write_json
from musictag.model.engines import select_backend
from musictag.params import load_params
from musictag.paths import DATA_DIR, METRICS_DIR, train_recovery_dir


def main() -> None:
    params = load_params()
    model, options = params["model"], params["train"]
    select_backend(options["backend"])  # before Keras loads
    from musictag.model.training import train

    summary = train(
        shards_dir=DATA_DIR / "shards",
        out_dir=DATA_DIR / "model",
        recovery_root=train_recovery_dir(),
        live_dir=METRICS_DIR / "train",
        model=model,
        hyperparameters=(params.get("models") or {}).get(model) or {},
        timing_csv=DATA_DIR / "model-timing.csv",  # wall-clock times: outside the outputs, which must reproduce
        **options,
    )
    write_json(METRICS_DIR / "train.json", summary)
    print(json.dumps(summary))


if __name__ == "__main__":
    run_main(main)
