# artbandit decision service. Point it at your Kafka with
#   -e ARTBANDIT_CONFIG=/etc/artbandit/config.toml  (or --set kafka.bootstrap_servers=...)
FROM python:3.11-slim
WORKDIR /app
# Exactly the locked, hash-checked set the tests ran with (service + embedded broker), in a
# layer of its own so a code change does not reinstall it.
COPY requirements/runtime.lock requirements/
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements/runtime.lock
COPY pyproject.toml README.md ./
COPY bandit ./bandit
COPY serving ./serving
COPY learner ./learner
COPY replay ./replay
COPY kafkaio ./kafkaio
COPY storage ./storage
COPY tuning ./tuning
COPY training ./training
COPY sim ./sim
COPY artbandit ./artbandit
COPY configs ./configs
RUN pip install --no-cache-dir --no-deps --no-build-isolation .
RUN useradd --create-home artbandit && mkdir -p /app/var && chown artbandit /app/var
USER artbandit
EXPOSE 8080
ENTRYPOINT ["artbandit"]
CMD ["serve", "--set", "serving.host=0.0.0.0"]
