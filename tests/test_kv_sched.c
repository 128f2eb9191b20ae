/*  test_kv_sched.c: scheduling policy and CPU count. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>

#include "kv_sched.h"

static void *s_policy_of_child(void *arg) {
    *(int *)arg = sched_getscheduler(0);
    return NULL;
}

Test(sched, batch_is_set_and_inherited_by_new_threads) {
    cr_assert_eq(kv_sched_batch(), 0);
    cr_expect_eq(sched_getscheduler(0), SCHED_BATCH);
    int child = -1;
    pthread_t thread;
    cr_assert_eq(pthread_create(&thread, NULL, s_policy_of_child, &child), 0);
    pthread_join(thread, NULL);
    cr_expect_eq(child, SCHED_BATCH, "a thread created afterwards runs under policy %d", child);
}

Test(sched, cpus_follow_the_affinity_mask) {
    cpu_set_t all, one;
    cr_assert_eq(sched_getaffinity(0, sizeof(all), &all), 0);
    cr_expect_eq(kv_sched_cpus(), CPU_COUNT(&all));
    int first = 0;
    while (!CPU_ISSET(first, &all)) first++;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    cr_assert_eq(sched_setaffinity(0, sizeof(one), &one), 0);
    cr_expect_eq(kv_sched_cpus(), 1);
    sched_setaffinity(0, sizeof(all), &all);
}
