#ifndef CRDKAFKA_SHIM_H
#define CRDKAFKA_SHIM_H

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

/* Macros that carry a cast are not imported into Swift; these expose their values. */
static inline int32_t crdkafka_partition_unassigned(void) { return RD_KAFKA_PARTITION_UA; }
static inline int64_t crdkafka_offset_beginning(void) { return RD_KAFKA_OFFSET_BEGINNING; }
static inline int64_t crdkafka_offset_end(void) { return RD_KAFKA_OFFSET_END; }
static inline int64_t crdkafka_offset_stored(void) { return RD_KAFKA_OFFSET_STORED; }
static inline int64_t crdkafka_offset_invalid(void) { return RD_KAFKA_OFFSET_INVALID; }

#endif
