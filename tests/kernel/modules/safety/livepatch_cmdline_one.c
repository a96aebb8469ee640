// SPDX-License-Identifier: GPL-2.0
/*
 * Cumulative patch 1 of the fleet-safety suite: /proc/cmdline shows a fixed text.
 * replace = true: cumulative, so going back to it from patch 2 is an atomic replace.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

static int livepatch_cmdline_proc_show(struct seq_file *m, void *v)
{
	seq_printf(m, "%s\n", "livepatch test one: cumulative patch 1 is applied");
	return 0;
}

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

static int livepatch_cmdline_init(void)
{
	return klp_enable_patch(&patch);
}

static void livepatch_cmdline_exit(void)
{
}

module_init(livepatch_cmdline_init);
module_exit(livepatch_cmdline_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("livepatch test: cumulative patch 1 of /proc/cmdline");
