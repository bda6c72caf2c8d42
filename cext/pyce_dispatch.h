/*
 * Runtime dispatch shared by pyce's C kernels (cext/pyce_loss_kernels.c and
 * cext/pyce_trainer_kernels.c).
 */
#ifndef PYCE_DISPATCH_H
#define PYCE_DISPATCH_H

/* Runtime dispatch between x86-64 micro-architecture levels: GCC clones the
 * block functions and picks one at load time (ifunc, glibc).  Elsewhere the
 * baseline build is used.  Never -march=native: the module runs anywhere. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && \
    defined(__linux__) && !defined(PYCE_NO_CLONES)
#define PYCE_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#define PYCE_HAVE_CLONES 1
#else
#define PYCE_CLONES
#define PYCE_HAVE_CLONES 0
#endif

#endif /* PYCE_DISPATCH_H */
