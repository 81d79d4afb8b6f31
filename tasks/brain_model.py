"""The MLflow pyfunc of a brain (models-from-code: MLflow stores this file, never a pickle).

Loading it loads the base model (by reference: the path in its model_config, checked against
the brain's fingerprint of it, never a copy) plus the memory from the logged artifacts; `predict` takes a
DataFrame with a `question` column (and optionally `context`, for open-book questions) and
returns the answers.

    model = mlflow.pyfunc.load_model("models:/lmsleep@champion")
    model.predict(pd.DataFrame({"question": ["Where was Ana Lo born?"]}))
"""

import mlflow
from mlflow.models import set_model


class BrainModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        from lmsleep.brain import load_brain

        # The base model is referenced, not copied (tasks/register.py): load_brain refuses a path
        # that holds no model, or another model than the brain's memory.json fingerprinted.
        self.model, self.tokenizer, _ = load_brain(context.artifacts["memory"], context.model_config["base_model"])
        self.model.eval()

    def predict(self, context, model_input, params=None):
        from lmsleep.evaluation import answer

        questions = [str(q) for q in model_input["question"]]
        contexts = [str(c) for c in model_input["context"]] if "context" in model_input else None
        return answer(self.model, self.tokenizer, questions, contexts)


set_model(BrainModel())
