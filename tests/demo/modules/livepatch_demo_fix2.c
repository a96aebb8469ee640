// SPDX-License-Identifier: GPL-2.0
/*
 * Demo fix 2 (cumulative, atomic replace): /proc/cmdline masks demo.password=
 * and demo.token= values.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>

#include "demo_fix.h"

static struct klp_func funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = livepatch_cmdline_proc_show,
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
MODULE_DESCRIPTION("livepatch demo fix 2: mask demo.password= and demo.token= in /proc/cmdline");
