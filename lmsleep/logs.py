"""Quiet third-party chatter in entry scripts, so their own progress bars and reports stand out."""

import warnings


def quiet_libraries() -> None:
    from datasets.utils.logging import disable_progress_bar as datasets_quiet
    from transformers.utils import logging as tf_logging

    datasets_quiet()  # "Tokenizing train dataset" bars, five per night
    tf_logging.disable_progress_bar()  # "Loading weights" bars on every load
    tf_logging.set_verbosity_error()
    # TRL's SFTConfig still sets the deprecated `gradient_checkpointing` name itself.
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.*deprecated", category=FutureWarning)
