// SPDX-License-Identifier: GPL-2.0
/*
 * A faulty livepatch: it loads and transitions cleanly, but its replacement of
 * cmdline_proc_show hits BUG() when /proc/cmdline is read. With oops=panic the
 * machine goes down, as a machine does when a bad fix meets its workload.
 * replace = true: cumulative, it replaces whatever patch was loaded.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bug.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>
#include <linux/seq_file.h>

static int livepatch_cmdline_proc_show(struct seq_file *m, void *v)
{
	pr_emerg("faulty replacement of cmdline_proc_show called\n");
	BUG();
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

static int livepatch_cmdline_bug_init(void)
{
	return klp_enable_patch(&patch);
}

static void livepatch_cmdline_bug_exit(void)
{
}

module_init(livepatch_cmdline_bug_init);
module_exit(livepatch_cmdline_bug_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("livepatch test: /proc/cmdline replacement that crashes");
