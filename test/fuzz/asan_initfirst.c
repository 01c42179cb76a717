/*
 * asan_initfirst.c -- preloaded after the ASan runtime (run.sh) so that ASan
 * initializes before any other library's constructor.
 *
 * The postgres binary is not instrumented, so the ASan runtime comes in by
 * LD_PRELOAD, and a preloaded library's constructors run after those of
 * the program's own libraries.  gnutls (pulled in by libldap) runs its
 * constructor first; ASan then initializes lazily inside a glibc function
 * that holds a locale lock, and the lock ends up corrupted: postgres, psql
 * and initdb all hang (in bindtextdomain or freelocale) under a plain
 * LD_PRELOAD of libclang_rt.asan.  Linked with -z initfirst, this object's
 * constructor runs before every other one and initializes ASan there, the
 * way the asan-preinit object does in an instrumented executable.
 */
extern void __asan_init(void);

__attribute__((constructor))
static void
paygw_asan_initfirst(void)
{
	__asan_init();
}
