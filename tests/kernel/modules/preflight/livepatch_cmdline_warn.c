// SPDX-License-Identifier: GPL-2.0
/*
 * A livepatch that loads and transitions cleanly, but whose replacement of
 * cmdline_proc_show misbehaves: it hits a WARN() whenever /proc/cmdline is read.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bug.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

static int livepatch_cmdline_proc_show(struct seq_file *m, void *v)
{
	WARN_ONCE(1, "livepatch_cmdline_warn: replacement reached a state it must not\n");
	seq_puts(m, "livepatch test warn\n");
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
		.funcs = funcs,
	}, { }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
	.replace = true,
};

static int livepatch_cmdline_warn_init(void)
{
	return klp_enable_patch(&patch);
}

static void livepatch_cmdline_warn_exit(void)
{
}

module_init(livepatch_cmdline_warn_init);
module_exit(livepatch_cmdline_warn_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("livepatch test: a replacement that warns");
