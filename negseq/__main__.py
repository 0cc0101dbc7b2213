"""``python -m negseq {fit,validate,test,predict}`` (LightningCLI) and ``{recommend,export}`` (:mod:`negseq.serving.commands`)."""

import sys

from negseq.errors import run_cli
from negseq.serving.commands import COMMANDS
from negseq.training.cli import NegSeqCLI


def main(args=None) -> None:
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] and argv[0] in COMMANDS:
        COMMANDS[argv[0]](argv[1:])
        return
    NegSeqCLI(args=args)


def console() -> None:
    """The ``negseq`` command installed by pip."""
    run_cli(main)


if __name__ == "__main__":
    console()
