/* Fork safety of the kernels' OpenMP regions (issue 15).
 *
 * GNU OpenMP (libgomp) keeps the worker threads of a parallel region in a
 * pool owned by the thread that started it, and has no fork handler: after
 * fork() the child inherits the pool's bookkeeping but not its threads, so
 * the child's next parallel region waits forever for workers that do not
 * exist (GCC bug 52303, closed as "invalid": the OpenMP standard says nothing
 * about fork).  OpenMP gives no way to rebuild the pool in the child; its one
 * tool, omp_pause_resource_all() in a prepare handler before every fork, is
 * undefined while any other thread of the process is inside an OpenMP region
 * (pyce's kernels run without the GIL, so another Python thread may be), and
 * it would pause the pool of every library sharing the same libgomp.
 *
 * pyce's policy is therefore: serial in a child of a parent that used
 * threads.  A pthread_atfork child handler, registered once when pyce._ce is
 * loaded, marks the child when the pool had been started before the fork
 * (by this process or by an ancestor: the mark is inherited by grandchildren,
 * whose pool bookkeeping is just as stale).  A child whose ancestors never
 * entered pyce's parallel region has no pool to inherit and keeps its threads;
 * spawn and forkserver children are fresh processes and keep theirs too.
 *
 * Another library may share pyce's libgomp and start the same pool: torch's
 * wheel ships its copy under the plain soname libgomp.so.1, so the loader maps
 * one libgomp for both (scikit-learn's wheel renames its copy: not shared).
 * When torch is loaded at fork time the child is serial too (a prepare handler
 * looks it up with dlopen(RTLD_NOLOAD)).  What this cannot see: another
 * library sharing the runtime (e.g. in a conda environment, or built from
 * source) that ran OpenMP regions in the parent, and a fork made before pyce
 * was imported (no handler was registered yet).
 *
 * Windows has no fork: there the functions keep the bookkeeping only.
 */
#ifndef PYCE_THREADS_H
#define PYCE_THREADS_H

/* Registers the fork handler (once; later calls do nothing).  Returns 0, or
 * the error number pthread_atfork returned. */
int pyce_threads_init(void);

/* 1 when a parallel region may use more than one thread in this process;
 * 0 in a forked child of a process whose OpenMP pool had been started. */
int pyce_threads_allowed(void);

/* Call right before entering a parallel region with more than one thread:
 * records that this process's OpenMP pool is (about to be) started. */
void pyce_threads_mark_pool(void);

/* 1 once this process (or an ancestor it was forked from) has entered a
 * parallel region with more than one thread, or was forked while torch was
 * loaded. */
int pyce_threads_pool_started(void);

#endif
