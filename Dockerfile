# Overseer: the Slack bot that runs scoped AI agents under human supervision.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True

WORKDIR /app
RUN useradd --create-home --uid 10001 overseer && mkdir /data && chown overseer /data

# Dependencies in their own layer: it is rebuilt only when pyproject.toml changes.
COPY pyproject.toml README.md ./
RUN mkdir -p bot agents storage migrations \
 && touch bot/__init__.py agents/__init__.py storage/__init__.py migrations/__init__.py \
 && pip install . && pip uninstall -y overseer && rm -rf bot agents storage migrations build

COPY bot ./bot
COPY agents ./agents
COPY storage ./storage
COPY migrations ./migrations
RUN pip install --no-deps . && rm -rf build
COPY workflows ./workflows

USER overseer
ENV DATABASE_URL=sqlite:////data/overseer.db \
    OVERSEER_WORKFLOWS=/app/workflows \
    PORT=3000
VOLUME ["/data"]
EXPOSE 3000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PORT', '3000'), timeout=4)" || exit 1

# Pending migrations first, then the bot (which would also migrate; this makes a failure obvious).
CMD ["sh", "-c", "overseer db upgrade && exec overseer serve"]
