#ifndef HERD_POOL_H
#define HERD_POOL_H
/* One pool of native threads; every op's work is shared by all of them, the caller's thread included. */
typedef void (*herd_task)(void *context, int thread);

/* Starts the pool with `threads` threads in all (the caller's included), ending an earlier one. */
int herd_pool_start(int threads);
int herd_pool_threads(void);
/* Runs task(context, t) on every thread t in 0..threads-1 and returns when all have finished. */
void herd_pool_run(herd_task task, void *context);
/* Runs run(context, item) for items 0..count-1, handed out from a counter to whichever thread asks. */
typedef void (*herd_item)(void *context, int item);
void herd_pool_for(int count, herd_item run, void *context);
/* Joins the pool's threads; later runs use the caller's thread alone. */
void herd_pool_stop(void);
#endif
