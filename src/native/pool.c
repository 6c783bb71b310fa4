/*
 * Workers wait for the next op by spinning briefly, then sleeping on a condition variable: a
 * decode step's ops follow each other within microseconds, but on a busy machine a worker that
 * kept spinning would take the core from the thread it waits for.
 *
 * The caller never waits for a worker that has not started on an op: work is shared out in
 * chunks taken from a counter, and once the caller has run out of chunks it closes the op and
 * waits only for the workers inside it. A worker the OS has not scheduled yet finds the op closed
 * (or joins the next one), so one descheduled thread costs that thread's chunk, not the op.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include "pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ volatile("yield")
#else
#define cpu_relax() ((void)0)
#endif

/* Some tens of microseconds of spinning before a worker sleeps, or the caller yields its core. */
#define SPIN_ROUNDS 4000

static struct {
  int threads;
  pthread_t *workers;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  atomic_uint generation;
  atomic_int active;   /* workers inside the current op */
  atomic_int closed;   /* the current op takes no more workers */
  atomic_int stopping;
  herd_task task;
  void *context;
} pool = {1, NULL, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 1, 0, NULL, NULL};

static unsigned await_generation(unsigned seen) {
  for (int spins = 0; spins < SPIN_ROUNDS; spins++) {
    unsigned now = atomic_load(&pool.generation);
    if (now != seen) return now;
    cpu_relax();
  }
  pthread_mutex_lock(&pool.lock);
  while (atomic_load(&pool.generation) == seen) pthread_cond_wait(&pool.wake, &pool.lock);
  pthread_mutex_unlock(&pool.lock);
  return atomic_load(&pool.generation);
}

static void *worker_main(void *argument) {
  const int thread = (int)(long)argument;
  unsigned seen = 0;
  for (;;) {
    seen = await_generation(seen);
    if (atomic_load(&pool.stopping)) return NULL;
    /* Entering before looking at `closed`: the caller either sees this worker inside or this worker sees the op closed. */
    atomic_fetch_add(&pool.active, 1);
    if (!atomic_load(&pool.closed)) pool.task(pool.context, thread);
    atomic_fetch_sub(&pool.active, 1);
  }
}

static void wait_for_workers_inside(void) {
  for (int spins = 0; atomic_load(&pool.active) > 0; spins++) {
    if (spins < SPIN_ROUNDS) cpu_relax();
    else sched_yield();
  }
}

static void wake_workers(void) {
  pthread_mutex_lock(&pool.lock);
  atomic_fetch_add(&pool.generation, 1);
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.lock);
}

void herd_pool_stop(void) {
  if (pool.workers == NULL) return;
  atomic_store(&pool.stopping, 1);
  wake_workers();
  for (int i = 1; i < pool.threads; i++) pthread_join(pool.workers[i - 1], NULL);
  free(pool.workers);
  pool.workers = NULL;
  pool.threads = 1;
  atomic_store(&pool.stopping, 0);
}

int herd_pool_start(int threads) {
  herd_pool_stop();
  if (threads <= 1) return 1;
  pool.workers = calloc((size_t)threads - 1, sizeof(pthread_t));
  if (pool.workers == NULL) return 0;
  /* Workers start from generation 0's point of view: any op already published is new to them. */
  atomic_store(&pool.generation, 1);
  atomic_store(&pool.closed, 1);
  pool.threads = threads;
  for (int i = 1; i < threads; i++) {
    if (pthread_create(&pool.workers[i - 1], NULL, worker_main, (void *)(long)i) != 0) {
      pool.threads = i;
      herd_pool_stop();
      return 0;
    }
  }
  return 1;
}

int herd_pool_threads(void) { return pool.threads; }

void herd_pool_run(herd_task task, void *context) {
  if (pool.threads <= 1) {
    task(context, 0);
    return;
  }
  pool.task = task;
  pool.context = context;
  atomic_store(&pool.closed, 0);
  wake_workers();
  task(context, 0);
  /* Every chunk is taken once the caller's task returns; only workers still computing one matter. */
  atomic_store(&pool.closed, 1);
  wait_for_workers_inside();
}

typedef struct {
  herd_item run;
  void *context;
  int count;
  atomic_int next;
} item_job;

static void item_task(void *context, int thread) {
  (void)thread;
  item_job *job = context;
  for (int item; (item = atomic_fetch_add(&job->next, 1)) < job->count;) job->run(job->context, item);
}

/* Items from a counter rather than a fixed split: a descheduled thread costs its item, not a share. */
void herd_pool_for(int count, herd_item run, void *context) {
  item_job job = {run, context, count, 0};
  atomic_init(&job.next, 0);
  herd_pool_run(item_task, &job);
}
