"""The consuming half: Kafka (Confluent-framed Avro) -> Spark Structured Streaming -> Cassandra.

One module per stage, each with one public entry point that tests call directly:

    session      build_spark_session(settings, app_name, master)  connector jars, Cassandra conf, Avro caps
    registry     SchemaBook                                        writer schemas by id, the reader schema
    decode       with_header(df), decode(df, snapshot)             5-byte header, from_avro per schema id, reasons
    sink         CassandraSink, DeadLetterSink                     upsert rows; poison records with headers
    write_split  write_or_split(spark, sink, rows, consumed)       rows Cassandra refuses, found by halving the write
    batch        BatchProcessor                                    one micro-batch: decode, write, progress, commit
    summary      ObservedBatch, summarize                          what a batch held: counts, ids, offsets, keys twice
    faults       FaultRider, transient_service                     what is transient, retries, the job state file
    consumer_group GroupCommitter                                  each batch's end offsets into a consumer group
    progress     next_progress / write_progress                    <checkpoint>.progress.json for `make status`
    stream_job   main(args), UserStreamJob                          the entry point (`python -m spark.stream_job`)

Modules are imported one by one (`from spark.decode import decode`): importing
this package does not start or import Spark.
"""
