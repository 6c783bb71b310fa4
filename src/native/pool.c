/*
 * Workers wait for the next op by spinning briefly, then sleeping on a condition variable: a
 * decode step's ops follow each other within microseconds, but on a busy machine a worker that
 * kept spinning would take the core from the thread it waits for.
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
#else
#define cpu_relax() ((void)0)
#endif

/* About 50–100 µs of spinning before a worker sleeps, or the caller yields its core. */
#define SPIN_ROUNDS 20000

static struct {
  int threads;
  pthread_t *workers;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  atomic_uint generation;
  atomic_int pending;
  atomic_int stopping;
  herd_task task;
  void *context;
  /* The generation when the workers were started: a worker that first runs after the first op was
     published must still see that op as new. */
  unsigned first_generation;
} pool = {1, NULL, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, NULL, NULL, 0};

static unsigned await_generation(unsigned seen) {
  for (int spins = 0; spins < SPIN_ROUNDS; spins++) {
    unsigned now = atomic_load_explicit(&pool.generation, memory_order_acquire);
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
  unsigned seen = pool.first_generation;
  for (;;) {
    seen = await_generation(seen);
    if (atomic_load(&pool.stopping)) return NULL;
    pool.task(pool.context, thread);
    atomic_fetch_sub_explicit(&pool.pending, 1, memory_order_release);
  }
}

static void publish(herd_task task, void *context) {
  pool.task = task;
  pool.context = context;
  pthread_mutex_lock(&pool.lock);
  atomic_fetch_add_explicit(&pool.generation, 1, memory_order_release);
  pthread_cond_broadcast(&pool.wake);
  pthread_mutex_unlock(&pool.lock);
}

void herd_pool_stop(void) {
  if (pool.workers == NULL) return;
  atomic_store(&pool.stopping, 1);
  publish(NULL, NULL);
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
  pool.threads = threads;
  pool.first_generation = atomic_load(&pool.generation);
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
  atomic_store_explicit(&pool.pending, pool.threads - 1, memory_order_relaxed);
  publish(task, context);
  task(context, 0);
  for (int spins = 0; atomic_load_explicit(&pool.pending, memory_order_acquire) > 0; spins++) {
    if (spins < SPIN_ROUNDS) cpu_relax();
    else sched_yield();
  }
}
