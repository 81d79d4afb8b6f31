"""The MLflow pyfunc of a brain (models-from-code: MLflow stores this file, never a pickle).

Loading it loads the base model (by reference: the path and fingerprint in its model_config,
never a copy) plus the memory from the logged artifacts; `predict` takes a
DataFrame with a `question` column (and optionally `context`, for open-book questions) and
returns the answers.

    model = mlflow.pyfunc.load_model("models:/lmsleep@champion")
    model.predict(pd.DataFrame({"question": ["Where was Ana Lo born?"]}))
"""

from pathlib import Path

import mlflow
from mlflow.models import set_model


class BrainModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from lmsleep.brain import fingerprint, load_brain

        # The base model is referenced, not copied (tasks/register.py): it must still be where it
        # was, byte for byte.
        base, expected = context.model_config["base_model"], context.model_config["base_fingerprint"]
        if not (Path(base) / "config.json").exists():
            raise FileNotFoundError(f"this brain's base model is no longer at {base}: put it back there (the "
                                    "registry keeps a reference to it, not a copy)")
        found = fingerprint(base)
        if found != expected:
            raise RuntimeError(f"this brain was grown on the base model at {base} with fingerprint {expected}; "
                               f"that path now holds {found}: restore the base model there")
        self.model, self.tokenizer, _ = load_brain(context.artifacts["memory"], base)
        self.model.eval()

    def predict(self, context, model_input, params=None):
        from lmsleep.evaluation import answer

        questions = [str(q) for q in model_input["question"]]
        contexts = [str(c) for c in model_input["context"]] if "context" in model_input else None
        return answer(self.model, self.tokenizer, questions, contexts)


set_model(BrainModel())
