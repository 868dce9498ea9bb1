"""The producing half: randomuser-compatible API -> validated users -> Avro on Kafka.

One module per stage, each with a public entry function that takes its dependencies:

    source.fetch_batches     pages of raw API records (retries, deadline, replayable seed + page; secrets dropped)
    transform.transform      raw record -> User | Rejected(reason); the User <-> Avro mapping (bounds: limits)
    protect.protect_result   opt-in field tokenization/encryption; `python -m producer.protect decrypt`
    publish.publish          Users as Avro (registered schema) / rejects to the dead-letter topic
    pipeline.run             the stages wired together: what the Airflow DAG calls
    register.main            `python -m producer.register`: the only writer of schemas

Submodules are not imported here, so `import producer.transform` stays light.
"""
