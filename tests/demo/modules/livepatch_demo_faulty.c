// SPDX-License-Identifier: GPL-2.0
/*
 * Demo fix 3, a faulty build: fix 2 plus a replacement for a function this
 * kernel does not have (it was built against the wrong source tree), so
 * klp_enable_patch() fails with "symbol not found" and loading it fails with
 * EINVAL on every machine. Pre-flight must refuse it before any canary.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>

#include "demo_fix.h"

static int livepatch_missing_function(void)
{
	return 0;
}

static struct klp_func funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = livepatch_cmdline_proc_show,
	}, {
		.old_name = "cmdline_proc_show_redacted",
		.new_func = livepatch_missing_function,
	}, { }
};

static struct klp_object objs[] = {
	{
		/* name being NULL means vmlinux */
		.funcs = funcs,
	}, { }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
	.replace = true,
};

static int livepatch_demo_init(void)
{
	int error = demo_read_cmdline();

	if (error)
		return error;
	demo_mask("demo.password=");
	demo_mask("demo.token=");
	return klp_enable_patch(&patch);
}

static void livepatch_demo_exit(void)
{
}

module_init(livepatch_demo_init);
module_exit(livepatch_demo_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("livepatch demo fix 3 (faulty): replaces a function this kernel lacks");
