"""The ``refinery`` command."""

from __future__ import annotations

import argparse
import sys

import yaml

from pipeline import storage

EXIT_USAGE = 2
EXIT_FAILED = 1


def _cmd_validate(args: argparse.Namespace) -> int:
    from pipeline.config import load_job_spec

    spec = load_job_spec(args.job, args.set)
    print(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), end="")
    print(f"# config hash: {spec.config_hash()}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.config import load_job_spec
    from pipeline.runner import run_job

    spec = load_job_spec(args.job, args.set)
    result = run_job(spec, address=args.address)
    print(f"snapshot {result.snapshot} (now latest): {result.manifest_uri}")
    print(f"run report:                {result.report_uri}")
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from pipeline.sample import write_sample_corpus

    summary = write_sample_corpus(args.out, num_docs=args.docs, num_shards=args.shards, seed=args.seed)
    print(f"wrote {summary['documents']} documents in {len(summary['shards'])} shards to {args.out}")
    print("planted: " + ", ".join(f"{k} {v}" for k, v in summary["planted"].items()))
    return 0


def _cmd_train_tokenizer(args: argparse.Namespace) -> int:
    from pipeline.tokenizer_training import train_tokenizer

    result = train_tokenizer(args.corpus, args.out, vocab_size=args.vocab_size, text_column=args.text_column,
                             max_documents=args.max_documents, seed=args.seed)
    print(f"trained a {result['vocab_size']}-piece sentencepiece model on {result['documents']} documents: {args.out}")
    return 0


def _cmd_train_lm(args: argparse.Namespace) -> int:
    from pipeline.lm_training import train_perplexity_model

    result = train_perplexity_model(args.corpus, args.out_dir, args.lang, order=args.order, vocab_size=args.vocab_size,
                                    sp_model=args.sp_model, text_column=args.text_column,
                                    max_documents=args.max_documents, seed=args.seed)
    stats = result["stats"]
    print(f"trained a {stats.order}-gram model ({stats.backend}) on {result['lines']:,} normalized lines of "
          f"{result['documents']:,} documents: {result['lm']} with {result['sp']}")
    print(f"use it with  stages.perplexity.models.{args.lang}: {{lm: {result['lm']}, sp: {result['sp']}}}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from pipeline.inspect_output import inspect_output

    options = storage.StorageOptions(endpoint_url=args.endpoint_url) if args.endpoint_url else None
    ok = inspect_output(args.output, samples=args.samples, out=sys.stdout, options=options, snapshot=args.snapshot)
    return 0 if ok else EXIT_FAILED


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="refinery", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check a job spec and print it with defaults filled in")
    validate.add_argument("job")
    validate.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    validate.set_defaults(func=_cmd_validate)

    run = commands.add_parser("run", help="run a job spec")
    run.add_argument("job")
    run.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                     help="override a spec value, e.g. --set stages.pack.seq_len=4096")
    run.add_argument("--address", help="existing Ray cluster (overrides ray.address)")
    run.set_defaults(func=_cmd_run)

    sample = commands.add_parser("sample", help="write the multi-domain sample corpus used by the demo")
    sample.add_argument("out")
    sample.add_argument("--docs", type=int, default=5000)
    sample.add_argument("--shards", type=int, default=8)
    sample.add_argument("--seed", type=int, default=0)
    sample.set_defaults(func=_cmd_sample)

    train = commands.add_parser("train-tokenizer", help="train a sentencepiece model on a Parquet corpus")
    train.add_argument("corpus")
    train.add_argument("out")
    train.add_argument("--vocab-size", type=int, default=8000)
    train.add_argument("--text-column", default="text")
    train.add_argument("--max-documents", type=int, default=20000)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=_cmd_train_tokenizer)

    train_lm = commands.add_parser(
        "train-lm", help="train a KenLM-loadable n-gram model (ARPA) and its sentencepiece model for perplexity")
    train_lm.add_argument("corpus", help="Parquet corpus (directory, prefix or glob; s3:// works)")
    train_lm.add_argument("out_dir", help="writes OUT_DIR/LANG.arpa and OUT_DIR/LANG.sp.model")
    train_lm.add_argument("--lang", required=True, help="the language label the models are for, e.g. en")
    train_lm.add_argument("--order", type=int, default=5)
    train_lm.add_argument("--vocab-size", type=int, default=8000, help="for the sentencepiece model it trains")
    train_lm.add_argument("--sp-model", help="use this sentencepiece model instead of training one")
    train_lm.add_argument("--text-column", default="text")
    train_lm.add_argument("--max-documents", type=int, default=20000)
    train_lm.add_argument("--seed", type=int, default=0)
    train_lm.set_defaults(func=_cmd_train_lm)

    inspect = commands.add_parser("inspect", help="verify an output's manifest against its shards and show samples")
    inspect.add_argument("output")
    inspect.add_argument("--samples", type=int, default=2)
    inspect.add_argument("--snapshot", help="a snapshot under OUTPUT/snapshots/ (default: the one latest.json names)")
    inspect.add_argument("--endpoint-url", help="S3-compatible endpoint for an s3:// output (e.g. MinIO)")
    inspect.set_defaults(func=_cmd_inspect)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import JobSpecError
    from pipeline.report import AccountingError
    from pipeline.runner import InputError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except JobSpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (InputError, AccountingError, storage.OutputNotWritable, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
