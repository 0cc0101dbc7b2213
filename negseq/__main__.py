"""``python -m negseq {fit,validate,test,predict}``: the plain LightningCLI subcommands."""

from negseq.cli import NegSeqCLI, run_cli


def main(args=None) -> None:
    NegSeqCLI(args=args)


if __name__ == "__main__":
    run_cli(main)
