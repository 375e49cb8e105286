"""The ``refinery`` command."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import traceback

import yaml

EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a writer whose reader left
EXIT_SIGINT = 130  # 128 + the signal, as shells and Kubernetes report a process stopped by it
EXIT_SIGTERM = 143


def _cmd_validate(args: argparse.Namespace) -> int:
    from pipeline.config import load_job_spec

    spec = load_job_spec(args.job, args.set)
    if spec.generate is not None:  # a spec that run would refuse is not valid
        from pipeline.config import JobSpecError
        from pipeline.phases.generate import GenerationBudgetError, check_budget

        try:
            check_budget(spec)
        except GenerationBudgetError as exc:
            raise JobSpecError(f"{args.job}: invalid job spec\n  {exc}") from None
    print(yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False), end="")
    print(f"# config hash: {spec.config_hash()}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.config import load_job_spec
    from pipeline.runner import run_job

    spec = load_job_spec(args.job, args.set)
    if args.dry_run:
        return _dry_run(spec)
    result = run_job(spec, address=args.address)
    # Done and committed: a Ctrl-C now must not cut short the shutdown of the local Ray.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    _stop_local_ray(args)
    signal.signal(signal.SIGINT, previous)
    print(f"snapshot {result.snapshot} (now latest): {result.manifest_uri}")
    print(f"run report:                {result.report_uri}")
    if result.page_uri:
        print(f"run report with charts:    {result.page_uri}")
    return 0


def _dry_run(spec) -> int:
    from pipeline.phases.generate import build_method, check_budget, plan_requests

    if spec.generate is None:
        print(f"job '{spec.name}' sends no requests to an LLM (it has no generate section); nothing else was done")
        return 0
    method = build_method(spec)  # a documents method reads its corpus: once
    plan = plan_requests(spec, method)
    print(
        f"job '{spec.name}' ({plan['method']}, model {spec.generate.backend.model} at {spec.generate.backend.base_url}) "
        f"sends at most {plan['max_requests']:,} requests (generate.max_requests: {plan['limit']:,}), about "
        f"{plan['prompt_tokens_per_request']:,} prompt tokens and up to {plan['max_tokens_per_request']:,} completion "
        f"tokens each: at most about {plan['max_tokens_total']:,} tokens in all. Nothing was sent."
    )
    check_budget(spec, method)
    return 0


def _cmd_sample(args: argparse.Namespace) -> int:
    from pipeline.tools.sample import write_sample_corpus

    summary = write_sample_corpus(args.out, num_docs=args.docs, num_shards=args.shards, seed=args.seed)
    print(f"wrote {summary['documents']} documents in {len(summary['shards'])} shards to {args.out}")
    print("planted: " + ", ".join(f"{k} {v}" for k, v in summary["planted"].items()))
    return 0


def _cmd_sample_chat(args: argparse.Namespace) -> int:
    from pipeline.tools.sample_chat import write_chat_samples

    summary = write_chat_samples(args.out, num_conversations=args.conversations, seed=args.seed)
    print(f"wrote {', '.join(f'{n} records to {name}' for name, n in summary['records'].items())} in {args.out}")
    print("planted: " + ", ".join(f"{k} {v}" for k, v in summary["plants"].items()))
    return 0


def _cmd_train_tokenizer(args: argparse.Namespace) -> int:
    from pipeline.tools.train_tokenizer import train_tokenizer

    result = train_tokenizer(
        args.corpus,
        args.out,
        vocab_size=args.vocab_size,
        text_column=args.text_column,
        max_documents=args.max_documents,
        seed=args.seed,
        tokenizer_format=args.format,
    )
    if args.format == "tokenizer.json":
        print(
            f"trained a {result['vocab_size']}-token byte-level BPE tokenizer.json on {result['documents']} documents: "
            f"{args.out} (special tokens in {result['config']})"
        )
        return 0
    print(f"trained a {result['vocab_size']}-piece sentencepiece model on {result['documents']} documents: {args.out}")
    return 0


def _cmd_train_lm(args: argparse.Namespace) -> int:
    from pipeline.tools.train_lm import train_perplexity_model

    result = train_perplexity_model(
        args.corpus,
        args.out_dir,
        args.lang,
        order=args.order,
        vocab_size=args.vocab_size,
        sp_model=args.sp_model,
        text_column=args.text_column,
        max_documents=args.max_documents,
        seed=args.seed,
    )
    stats = result["stats"]
    print(
        f"trained a {stats.order}-gram model ({stats.backend}) on {result['lines']:,} normalized lines of "
        f"{result['documents']:,} documents: {result['lm']} with {result['sp']}"
    )
    print(f"use it with  stages.perplexity.models.{args.lang}: {{lm: {result['lm']}, sp: {result['sp']}}}")
    return 0


def _cmd_train_classifier(args: argparse.Namespace) -> int:
    from pipeline.stages.classifier.config import TextPreparation
    from pipeline.tools.train_classifier import TrainingOptions, metrics_path, train_classifier

    corpora: dict[str, list[str]] = {}
    for label, uris in (("hq", args.positive), ("cc", args.negative)):
        if uris:
            corpora[label] = list(uris)
    for item in args.label or []:
        label, sep, uri = item.partition("=")
        if not sep or not label or not uri:
            raise SystemExit(f"--label takes NAME=URI (got '{item}')")
        corpora.setdefault(label, []).append(uri)
    options = TrainingOptions(
        per_label=args.per_label,
        holdout=args.holdout,
        epoch=args.epoch,
        lr=args.lr,
        dim=args.dim,
        word_ngrams=args.word_ngrams,
        bucket=args.bucket,
        min_count=args.min_count,
        threads=args.threads,
        quantize=args.quantize,
        seed=args.seed,
        text_column=args.text_column,
        prepare=TextPreparation(max_chars=args.max_chars, newlines=args.newlines, lowercase=args.lowercase),
    )
    metrics = train_classifier(corpora, args.out, options)
    print(
        f"trained a fastText classifier on {metrics['train_documents']:,} documents "
        f"({metrics['per_label']:,} per label, {metrics['heldout_documents']:,} held out): {args.out}"
    )
    print("| label | precision | recall | F1 | ROC-AUC | held out |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, m in metrics["labels"].items():
        print(
            f"| {label} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | {m['roc_auc']:.4f} | {m['support']:,} |"
        )
    print(f"accuracy {metrics['accuracy']:.4f}; metrics: {metrics_path(args.out)}")
    first = next(iter(metrics["labels"]))
    print(
        f"use it with  stages.classifier.classifiers: [{{name: quality, model: {args.out}, label: {first}, "
        "min_percentile: 90}]"
    )
    return 0


def _cmd_convert_chat(args: argparse.Namespace) -> int:
    import json

    from pipeline.chat import ChatColumns, ValidationRules
    from pipeline.tools.convert_chat import convert_chat

    columns = ChatColumns(**json.loads(args.columns)) if args.columns else ChatColumns()
    rules = ValidationRules(
        allow_consecutive_user_turns=args.allow_consecutive_user_turns,
        allow_no_assistant_turn=args.allow_no_assistant_turn,
    )
    counts = convert_chat(args.input, args.out, args.to, args.from_format, columns, rules)
    read_from = ", ".join(f"{n:,} {fmt}" for fmt, n in sorted(counts.formats.items())) or "none"
    print(f"read {counts.read:,} records; wrote {counts.written:,} as {args.to} to {args.out} (from {read_from})")
    for reason, n in counts.rejected.most_common():
        print(f"  rejected {reason}: {n:,}")
    if counts.rejected:
        print(f"rejected records, with their source and reason: {args.out.removesuffix('.gz')}.rejects.jsonl")
    return 0 if counts.balanced() else 1


def _cmd_inspect(args: argparse.Namespace) -> int:
    from pipeline.core import storage
    from pipeline.tools.inspect import inspect_output

    options = storage.StorageOptions(endpoint_url=args.endpoint_url) if args.endpoint_url else None
    ok = inspect_output(args.output, samples=args.samples, out=sys.stdout, options=options, snapshot=args.snapshot)
    return 0 if ok else EXIT_FAILED


def _cmd_report(args: argparse.Namespace) -> int:
    from pipeline.core import storage
    from pipeline.report_page import rebuild_page

    options = storage.StorageOptions(endpoint_url=args.endpoint_url) if args.endpoint_url else None
    try:
        page = rebuild_page(args.output, args.snapshot, options)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(f"run report with charts: {page}")
    if args.open:
        import pathlib
        import webbrowser

        if not storage.is_local(page) or not webbrowser.open(pathlib.Path(storage.filesystem(page)[1]).as_uri()):
            print("(no browser to open it with here: open the file above)", file=sys.stderr)
    return 0


def _cmd_submit(args: argparse.Namespace) -> int:
    from pipeline.tools.submit import JobsApi, exit_code, local_path_warning, prepare_spec, status_name

    prepared = prepare_spec(args.job, args.set, check_files=not args.no_file_checks)  # errors before submitting
    warning = local_path_warning(prepared.local_paths)
    if warning:
        print(warning, file=sys.stderr)
    api = JobsApi(args.address)
    job_id = api.submit(prepared, submission_id=args.submission_id, source=args.job)
    print(f"submitted job '{prepared.spec.name}' to {api.address} as {job_id}")
    address = f" --address {api.address}"
    if not args.wait:
        print(
            f"  refinery status {job_id}{address}\n  refinery logs {job_id}{address} --follow\n"
            f"  refinery stop {job_id}{address}"
        )
        return 0
    info = _follow(api, job_id)
    ended = f"job {job_id}: {status_name(info)}"
    if status_name(info) != "SUCCEEDED" and info.message:
        ended += ": " + info.message.splitlines()[0]  # the rest repeats the logs just printed
    print(ended)
    return exit_code(info)


def _follow(api, job_id: str):
    try:
        return api.follow(job_id, sys.stdout)
    except KeyboardInterrupt:
        print(f"\nstopped following; the job goes on (refinery stop {job_id} --address {api.address})", file=sys.stderr)
        raise SystemExit(130) from None


def _cmd_status(args: argparse.Namespace) -> int:
    from pipeline.tools.submit import JobsApi, describe, status_name

    info = JobsApi(args.address).info(args.id)
    print(describe(info))
    return EXIT_FAILED if status_name(info) in ("FAILED", "STOPPED") else 0


def _cmd_logs(args: argparse.Namespace) -> int:
    from pipeline.tools.submit import JobsApi

    api = JobsApi(args.address)
    if args.follow:
        _follow(api, args.id)
    else:
        sys.stdout.write(api.logs(args.id))
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    from pipeline.tools.submit import JobsApi, status_name

    info = JobsApi(args.address).stop(args.id, timeout_s=args.timeout)
    print(f"job {args.id}: {status_name(info)}")
    return 0


def _add_overrides(command: argparse.ArgumentParser, help_text: str) -> None:
    command.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help=help_text)


def build_parser() -> argparse.ArgumentParser:
    from pipeline import __version__

    parser = argparse.ArgumentParser(prog="refinery", description=__doc__)
    parser.add_argument("--version", action="version", version=f"refinery {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="on failure, print the traceback (and a Ray worker's) after the error"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check a job spec and print it with defaults filled in")
    validate.add_argument("job", help="the job spec: a YAML file (path or s3:// URI)")
    _add_overrides(validate, "override a spec value before validating, as for run; repeatable")
    validate.set_defaults(func=_cmd_validate)

    run = commands.add_parser("run", help="run a job spec")
    run.add_argument("job", help="the job spec: a YAML file (path or s3:// URI)")
    _add_overrides(run, "override a spec value, e.g. --set stages.pack.seq_len=4096; repeatable")
    run.add_argument("--address", help="existing Ray cluster (overrides ray.address)")
    run.add_argument(
        "--dry-run",
        action="store_true",
        help="validate, then print what a generation job would send to its LLM (most requests, rough tokens) and stop",
    )
    run.set_defaults(func=_cmd_run)

    address_help = "the cluster's Ray dashboard (Jobs API); default: $RAY_ADDRESS, else http://127.0.0.1:8265"
    submit = commands.add_parser("submit", help="run a job spec on a Ray cluster through the Ray Jobs API")
    submit.add_argument("job", help="the job spec: a YAML file; it is validated here, then sent")
    _add_overrides(submit, "override a spec value, as for run")
    submit.add_argument("--address", help=address_help)
    submit.add_argument("--submission-id", help="the job's id on the cluster (default: one Ray makes up)")
    submit.add_argument(
        "--wait",
        action="store_true",
        help="follow the job's logs until it ends and exit with its status (0: succeeded)",
    )
    submit.add_argument(
        "--no-file-checks",
        action="store_true",
        help="check keys and values only, for input and model paths that exist only on the cluster",
    )
    submit.set_defaults(func=_cmd_submit)

    for name, func, help_text in (
        ("status", _cmd_status, "a submitted job's status, times and entrypoint, and why it failed"),
        ("logs", _cmd_logs, "a submitted job's driver output"),
        ("stop", _cmd_stop, "stop a submitted job and wait until it has stopped"),
    ):
        command = commands.add_parser(name, help=help_text)
        command.add_argument("id", help="the submission id that submit printed")
        command.add_argument("--address", help=address_help)
        if name == "logs":
            command.add_argument("--follow", "-f", action="store_true", help="keep printing until the job ends")
        if name == "stop":
            command.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for it to stop")
        command.set_defaults(func=func)

    sample = commands.add_parser("sample", help="write the multi-domain sample corpus used by the demo")
    sample.add_argument("out", help="directory to write Parquet shards to (and _plants.json, what was planted)")
    sample.add_argument("--docs", type=int, default=5000, help="documents in all (default: 5000)")
    sample.add_argument("--shards", type=int, default=8, help="Parquet files to split them into (default: 8)")
    sample.add_argument("--seed", type=int, default=0, help="the same seed writes the same bytes (default: 0)")
    sample.set_defaults(func=_cmd_sample)

    sample_chat = commands.add_parser(
        "sample-chat", help="write the chat sample data used by the SFT demo (Alpaca, ShareGPT, OpenAI files)"
    )
    sample_chat.add_argument("out", help="directory to write the files to (and _plants.json, what was planted)")
    sample_chat.add_argument(
        "--conversations", type=int, default=1000, help="conversations before the planted ones (default: 1000)"
    )
    sample_chat.add_argument("--seed", type=int, default=0, help="the same seed writes the same bytes (default: 0)")
    sample_chat.set_defaults(func=_cmd_sample_chat)

    train = commands.add_parser(
        "train-tokenizer", help="train a sentencepiece model or a byte-level BPE tokenizer.json on a corpus"
    )
    train.add_argument("corpus", help="corpus of Parquet or JSON lines files: directory, prefix or glob (s3:// works)")
    train.add_argument("out", help="where to write the .model file (path or s3:// URI)")
    train.add_argument("--vocab-size", type=int, default=8000, help="pieces in the model (default: 8000)")
    train.add_argument(
        "--format",
        choices=["sentencepiece", "tokenizer.json"],
        default="sentencepiece",
        help="sentencepiece (a .model) or a Hugging Face tokenizer.json (byte-level BPE, with a tokenizer_config.json "
        "beside it naming its EOS and pad tokens) (default: sentencepiece)",
    )
    train.add_argument(
        "--text-column", default="text", help="column or JSON field (a dotted path) holding the text (default: text)"
    )
    train.add_argument(
        "--max-documents",
        type=int,
        default=20000,
        help="train on at most this many documents, drawn at random by --seed (default: 20000); "
        "sentencepiece holds every training sentence in memory",
    )
    train.add_argument("--seed", type=int, default=0, help="seed of the document draw and of training (default: 0)")
    train.set_defaults(func=_cmd_train_tokenizer)

    train_lm = commands.add_parser(
        "train-lm", help="train a KenLM-loadable n-gram model (ARPA) and its sentencepiece model for perplexity"
    )
    train_lm.add_argument(
        "corpus", help="corpus of Parquet or JSON lines files (directory, prefix or glob; s3:// works)"
    )
    train_lm.add_argument("out_dir", help="writes OUT_DIR/LANG.arpa and OUT_DIR/LANG.sp.model")
    train_lm.add_argument("--lang", required=True, help="the language label the models are for, e.g. en")
    train_lm.add_argument("--order", type=int, default=5, help="n-gram order (default: 5, as CCNet)")
    train_lm.add_argument("--vocab-size", type=int, default=8000, help="for the sentencepiece model it trains")
    train_lm.add_argument("--sp-model", help="use this sentencepiece model instead of training one")
    train_lm.add_argument("--text-column", default="text", help="column holding the text (default: text)")
    train_lm.add_argument(
        "--max-documents",
        type=int,
        default=20000,
        help="train on at most this many documents, drawn at random by --seed (default: 20000)",
    )
    train_lm.add_argument("--seed", type=int, default=0, help="seed of the document draw (default: 0)")
    train_lm.set_defaults(func=_cmd_train_lm)

    train_cls = commands.add_parser(
        "train-classifier",
        help="train a fastText classifier (DCLM's recipe: bigrams, balanced labels) and measure it on held-out text",
    )
    train_cls.add_argument("out", help="where to write the model (.bin, or .ftz with --quantize); path or s3://")
    train_cls.add_argument(
        "--positive", action="append", metavar="URI", help="corpus of the positive label __label__hq (repeatable)"
    )
    train_cls.add_argument(
        "--negative", action="append", metavar="URI", help="corpus of the negative label __label__cc (repeatable)"
    )
    train_cls.add_argument(
        "--label",
        action="append",
        metavar="NAME=URI",
        help="a corpus of label NAME (repeatable; for more than two labels, e.g. a topic classifier that routes domains)",
    )
    train_cls.add_argument(
        "--text-column", default="text", help="column or dotted JSON path of the text (default: text)"
    )
    train_cls.add_argument(
        "--per-label", type=int, default=200_000, help="documents drawn per label, balanced (default: 200000, DCLM's)"
    )
    train_cls.add_argument("--holdout", type=float, default=0.1, help="share of each label held out (default: 0.1)")
    train_cls.add_argument("--epoch", type=int, default=5, help="training epochs (default: 5)")
    train_cls.add_argument("--lr", type=float, default=0.1, help="learning rate (default: 0.1)")
    train_cls.add_argument("--dim", type=int, default=100, help="vector size (default: 100)")
    train_cls.add_argument(
        "--bucket",
        type=int,
        default=2_000_000,
        help="n-gram hash buckets; the model holds bucket x dim floats (default: 2000000)",
    )
    train_cls.add_argument("--word-ngrams", type=int, default=2, help="word n-grams (default: 2, bigrams)")
    train_cls.add_argument("--min-count", type=int, default=1, help="minimum word count (default: 1)")
    train_cls.add_argument("--threads", type=int, default=1, help="training threads; 1 is deterministic (default: 1)")
    train_cls.add_argument("--quantize", action="store_true", help="compress with product quantization (write .ftz)")
    train_cls.add_argument("--seed", type=int, default=0, help="seed of the draw, the split and training (default: 0)")
    train_cls.add_argument(
        "--max-chars", type=int, default=None, help="text preparation: read only this many characters (default: all)"
    )
    train_cls.add_argument(
        "--newlines",
        choices=["space", "join_lines"],
        default="space",
        help="text preparation: line breaks to spaces, or DCLM's strip + splitlines + join (default: space)",
    )
    train_cls.add_argument("--lowercase", action="store_true", help="text preparation: lower-case the text")
    train_cls.set_defaults(func=_cmd_train_classifier)

    convert = commands.add_parser(
        "convert-chat", help="convert chat data between Alpaca, ShareGPT, OpenAI messages and ChatML, validating it"
    )
    convert.add_argument("input", help="a .json array, .jsonl(.gz/.zst) or .parquet file, or a directory of them")
    convert.add_argument("out", help="JSON lines in the target format (gzipped if it ends in .gz)")
    convert.add_argument(
        "--to", required=True, choices=["alpaca", "sharegpt", "openai", "chatml"], help="the format written"
    )
    convert.add_argument(
        "--from",
        dest="from_format",
        choices=["alpaca", "sharegpt", "openai", "chatml"],
        help="the format read (default: detected per record)",
    )
    convert.add_argument(
        "--columns", help='renamed fields as JSON, e.g. \'{"conversations": "dialog", "role_tag": "speaker"}\''
    )
    convert.add_argument(
        "--allow-consecutive-user-turns",
        action="store_true",
        help="keep conversations with two user turns in a row (default: rejected as consecutive_user_turns)",
    )
    convert.add_argument(
        "--allow-no-assistant-turn",
        action="store_true",
        help="keep conversations with no assistant turn (default: rejected as no_assistant_turn)",
    )
    convert.set_defaults(func=_cmd_convert_chat)

    inspect = commands.add_parser("inspect", help="verify an output's manifest against its shards and show samples")
    inspect.add_argument("output", help="a run's output.uri (path or s3:// URI)")
    inspect.add_argument("--samples", type=int, default=2, help="documents of each shard to print (default: 2)")
    inspect.add_argument("--snapshot", help="a snapshot under OUTPUT/snapshots/ (default: the one latest.json names)")
    inspect.add_argument("--endpoint-url", help="S3-compatible endpoint for an s3:// output (e.g. MinIO)")
    inspect.set_defaults(func=_cmd_inspect)

    report = commands.add_parser(
        "report", help="rebuild report.html and its charts from what a run wrote (old runs get the new page)"
    )
    report.add_argument("output", help="a run's output.uri (path or s3:// URI)")
    report.add_argument("--snapshot", help="a snapshot under OUTPUT/snapshots/ (default: the latest run's report)")
    report.add_argument("--endpoint-url", help="S3-compatible endpoint for an s3:// output (e.g. MinIO)")
    report.add_argument("--open", action="store_true", help="open the page in a browser")
    report.set_defaults(func=_cmd_report)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM (Kubernetes, ``kill``, systemd, a scheduler) arrived: handled as an interrupt
    everywhere (not an ``Exception``, so no library's error handler logs it as a failure)."""


_terminated = threading.Event()


def _raise_terminated(signum, frame) -> None:
    # Remembered as well as raised: a library may turn any exception from a signal handler
    # into a plain KeyboardInterrupt (Ray's blocking calls do).
    _terminated.set()
    raise Terminated()


def _interrupted(args: argparse.Namespace, code: int) -> int:
    """After Ctrl-C or SIGTERM: say what was kept, stop the Ray this process started and
    leave no process of it behind."""
    # a second Ctrl-C does not cut the cleanup short
    interrupt, terminate = signal.signal(signal.SIGINT, signal.SIG_IGN), signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.command == "run":
        print("\ninterrupted; committed work is kept: run the same command again to resume", file=sys.stderr)
    else:
        print("\ninterrupted", file=sys.stderr)
    _stop_local_ray(args)
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, terminate)
    return code


def _ray_running() -> bool:
    if "ray" not in sys.modules:
        return False
    import ray

    return ray.is_initialized()


def _stop_local_ray(args: argparse.Namespace) -> None:
    """Shut down the Ray this command started (none when it found one running, as a caller
    in Python may have), and end any of its processes that outlive the shutdown."""
    if not args.owns_ray or not _ray_running():
        return
    import psutil
    import ray

    descendants = psutil.Process().children(recursive=True)  # before Ray's own processes are reparented
    ray.shutdown()
    _, alive = psutil.wait_procs(descendants, timeout=5)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    _terminated.clear()
    try:
        return _main(args)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


def _main(args: argparse.Namespace) -> int:
    args.owns_ray = not _ray_running()
    try:
        return args.func(args)
    except KeyboardInterrupt:  # Terminated too
        return _interrupted(args, EXIT_SIGTERM if _terminated.is_set() else EXIT_SIGINT)
    except BrokenPipeError:
        # `refinery validate ... | head`: the reader left; say nothing more to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except Exception as exc:
        code = _expected_failure(exc)
        if code is None:
            raise  # a bug: its traceback is what a report of it needs
        print(f"error: {exc}", file=sys.stderr)
        if args.debug:
            traceback.print_exception(exc)
            if getattr(exc, "worker_traceback", None):
                print(exc.worker_traceback, file=sys.stderr)
        elif getattr(exc, "worker_traceback", None) and not getattr(exc, "expected", False):
            print("(refinery --debug ... prints the worker's traceback)", file=sys.stderr)
        return code


def _expected_failure(exc: Exception) -> int | None:
    """The exit code of a failure the tool foresees (one ``error:`` line, no traceback)."""
    from pipeline.config import JobSpecError
    from pipeline.core import storage
    from pipeline.generation.client import BackendError
    from pipeline.phases.generate import GenerationBudgetError
    from pipeline.phases.shard_tasks import ShardTaskError
    from pipeline.report import AccountingError
    from pipeline.runner import ClusterUnreachable, InputError
    from pipeline.tools.convert_chat import ChatInputError
    from pipeline.tools.submit import SubmitError
    from pipeline.tools.train_tokenizer import CorpusError

    if isinstance(exc, JobSpecError):
        return EXIT_USAGE
    expected = (
        InputError,
        AccountingError,
        storage.OutputNotWritable,
        FileNotFoundError,
        SubmitError,
        ShardTaskError,
        ClusterUnreachable,
        CorpusError,
        ChatInputError,
        BackendError,
        GenerationBudgetError,
    )
    if isinstance(exc, expected):
        return EXIT_FAILED
    return None


if __name__ == "__main__":
    sys.exit(main())
