# artbandit decision service. Point it at your Kafka with
#   -e ARTBANDIT_CONFIG=/etc/artbandit/config.toml  (or --set kafka.bootstrap_servers=...)
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bandit ./bandit
COPY serving ./serving
COPY replay ./replay
COPY configs ./configs
RUN pip install --no-cache-dir ".[embedded]"
RUN useradd --create-home artbandit && mkdir -p /app/var && chown artbandit /app/var
USER artbandit
EXPOSE 8080
ENTRYPOINT ["artbandit"]
CMD ["serve", "--set", "serving.host=0.0.0.0"]
