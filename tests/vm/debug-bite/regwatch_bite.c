// SPDX-License-Identifier: GPL-2.0
/*
 * regwatch_bite: TEST ONLY. Makes the debug kernel report one bug of each
 * kind that `make check-debug` must fail on, so that
 * scripts/check-debug-bite.sh can prove the harness notices each of them:
 *   lockdep  an AB-BA lock order (no real deadlock: one thread)
 *   warn     WARN_ON(1)
 *   ubsan    a shift by more than the width of the type
 *   kasan    a read one byte past a kmalloc'ed object
 *   leak     kmalloc'ed objects whose last pointers are dropped
 * Load with what=lockdep,warn,ubsan,kasan,leak (any subset).
 */
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/string.h>

static char *what = "";
module_param(what, charp, 0444);
MODULE_PARM_DESC(what, "comma-separated: lockdep,warn,ubsan,kasan,leak");

static DEFINE_MUTEX(bite_a);
static DEFINE_MUTEX(bite_b);
/* volatile: the compiler must not see the bugs coming. */
static volatile int bite_shift = 40;
static volatile int bite_index = 16;
static void *volatile bite_sink;

static bool want(const char *name)
{
	const char *p = what;
	size_t n = strlen(name);

	while ((p = strstr(p, name))) {
		if ((p == what || p[-1] == ',') && (p[n] == ',' || !p[n]))
			return true;
		p += n;
	}
	return false;
}

static int __init bite_init(void)
{
	if (want("lockdep")) {
		mutex_lock(&bite_a);
		mutex_lock(&bite_b);
		mutex_unlock(&bite_b);
		mutex_unlock(&bite_a);
		mutex_lock(&bite_b);
		mutex_lock(&bite_a);
		mutex_unlock(&bite_a);
		mutex_unlock(&bite_b);
	}
	if (want("warn"))
		WARN_ON(1);
	if (want("ubsan")) {
		int v = 1 << bite_shift;

		pr_info("regwatch_bite: ubsan %d\n", v);
	}
	if (want("kasan")) {
		char *p = kmalloc(16, GFP_KERNEL);

		if (p) {
			pr_info("regwatch_bite: kasan %d\n", p[bite_index]);
			kfree(p);
		}
	}
	if (want("leak")) {
		int i;

		/*
		 * Many objects: the last pointers can survive as stale words
		 * on a (cached, scanned) kernel stack and hide their object.
		 */
		for (i = 0; i < 32; i++) {
			bite_sink = kmalloc(128, GFP_KERNEL);
			bite_sink = NULL;
		}
	}
	return 0;
}

static void __exit bite_exit(void)
{
}

module_init(bite_init);
module_exit(bite_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("regwatch test only: trigger debug-kernel reports");
