#ifndef HERD_BANDWIDTH_H
#define HERD_BANDWIDTH_H
#include <stddef.h>

/*
 * The read-bandwidth probe of `herd bench --bandwidth`: every thread of the pool reads a buffer of
 * its own, bytes_per_thread rounded up to whole iterations of its loop and paged in by that
 * thread beforehand, `passes` times with the widest loads of the path named `isa`, all threads
 * starting together. intervals gets, for each repetition and thread, the seconds (one monotonic
 * clock) its reads started and ended: [repetition][thread][2]. 0 when the buffers cannot be
 * allocated.
 */
int herd_read_bandwidth(const char *isa, size_t bytes_per_thread, int passes, int repetitions, double *intervals);
#endif
