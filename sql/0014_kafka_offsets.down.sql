DROP TABLE explore.kafka_offsets;
