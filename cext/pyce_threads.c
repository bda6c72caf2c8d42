/* Fork safety of the kernels' OpenMP regions: see pyce_threads.h. */
#include "pyce_threads.h"

#if !defined(_WIN32)
#define PYCE_HAVE_FORK 1
#include <dlfcn.h>
#include <pthread.h>
#else
#define PYCE_HAVE_FORK 0
#endif

/* Both flags are written before a fork is possible to matter and read by any
 * thread: GCC/clang atomics where fork exists (no torn or cached reads). */
#if defined(__GNUC__) || defined(__clang__)
#define PYCE_LOAD(v) __atomic_load_n(&(v), __ATOMIC_ACQUIRE)
#define PYCE_STORE(v, x) __atomic_store_n(&(v), (x), __ATOMIC_RELEASE)
#else
#define PYCE_LOAD(v) (v)
#define PYCE_STORE(v, x) ((v) = (x))
#endif

static volatile int pool_started = 0;    /* a parallel region was entered here or in an ancestor */
static volatile int serial_after_fork = 0; /* this process was forked after that */

#if PYCE_HAVE_FORK
/* Libraries known to run OpenMP regions on the same runtime as pyce: torch's
 * wheel ships its libgomp as "libgomp.so.1", and the loader maps one object per
 * soname, so torch and pyce share one pool whichever was imported first. */
static const char *const shared_runtime_users[] = {"libtorch_cpu.so", NULL};
static int shared_user_at_fork = 0;

/* Runs in the parent right before fork(), in the forking thread: is a known
 * co-user of the runtime loaded (RTLD_NOLOAD: looked up, never loaded)? */
static void pyce_threads_atfork_prepare(void)
{
    int found = 0;
#ifdef RTLD_NOLOAD
    for (int i = 0; !found && shared_runtime_users[i]; i++) {
        void *h = dlopen(shared_runtime_users[i], RTLD_LAZY | RTLD_NOLOAD);
        if (h) {
            found = 1;
            dlclose(h);
        }
    }
#endif
    shared_user_at_fork = found;
}

/* Runs in the child, single-threaded, right after fork(). */
static void pyce_threads_atfork_child(void)
{
    if (PYCE_LOAD(pool_started) || shared_user_at_fork) {
        PYCE_STORE(pool_started, 1);  /* and for this child's own children */
        PYCE_STORE(serial_after_fork, 1);
    }
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static int init_error = 0;

static void pyce_threads_register(void)
{
    init_error = pthread_atfork(pyce_threads_atfork_prepare, NULL, pyce_threads_atfork_child);
}
#endif

int pyce_threads_init(void)
{
#if PYCE_HAVE_FORK
    pthread_once(&init_once, pyce_threads_register);
    return init_error;
#else
    return 0;
#endif
}

int pyce_threads_allowed(void)
{
    return !PYCE_LOAD(serial_after_fork);
}

void pyce_threads_mark_pool(void)
{
    if (!PYCE_LOAD(pool_started))
        PYCE_STORE(pool_started, 1);
}

int pyce_threads_pool_started(void)
{
    return PYCE_LOAD(pool_started);
}
