/*  kv_sched.c: scheduling policy and CPU count (see kv_sched.h). */
#include "kv_sched.h"

#include <sched.h>

int kv_sched_batch(void) {
    struct sched_param param = {.sched_priority = 0};
    return sched_setscheduler(0, SCHED_BATCH, &param);
}

long kv_sched_cpus(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
    int count = CPU_COUNT(&set);
    return count > 0 ? count : 1;
}
