# Photosearch web app image, in two flavours (docs/deploy.md):
#   docker build --target full -t photosearch-app:full .   # the face engine inside (torch, CPU)
#   docker build --target slim -t photosearch-app:slim .   # no torch, for the smallest task
# `photosearch aws app build` builds one in CodeBuild (or here, when a Docker engine runs) and
# pushes it to ECR. The task definition (infra/app-hosting.yaml) gives the start command its
# album, index and accounts; the CMD below is what `docker run` starts without one.
FROM python:3.11-slim AS base
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 \
    HOME=/tmp PHOTOSEARCH_DATA_DIR=/tmp/photosearch
WORKDIR /opt/photosearch
COPY pyproject.toml README.md ./
COPY src ./src
COPY infra ./infra

# No torch: the project without its dependencies, then those the app, the index reader and S3
# need. It shows, downloads and searches only what needs no face engine (see docs/deploy.md).
FROM base AS slim
RUN pip install --no-deps . \
 && pip install numpy pillow pillow-heif platformdirs click rich pyarrow fsspec \
      streamlit==1.67.0 boto3==1.43.117 s3fs==2026.9.0
USER 10001
EXPOSE 8501
CMD ["photosearch", "app", "--public", "--no-browser", "--port", "8501"]

# The default: the face engine inside. The CPU wheel goes first, on its own: a plain
# `pip install torch` would pull a multi-GB CUDA build.
FROM base AS full
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu \
 && pip install '.[aws]'
USER 10001
EXPOSE 8501
CMD ["photosearch", "app", "--public", "--no-browser", "--port", "8501"]
