// SPDX-License-Identifier: GPL-2.0
/*
 * Demo fix 4: fix 2 plus an audit meant to catch a secret about to be shown
 * unmasked. The audit has a bug: it looks for the secret's key instead of an
 * unmasked value, so it hits a WARN the first time /proc/cmdline is read on a
 * machine whose command line carries demo.password= at all. Pre-flight's
 * plain boot has no such parameter, so the module passes pre-flight; the demo
 * VM has one, so its kernel logs the WARNING (naming this module), gains the
 * W taint, and the client's health check judges the patch unhealthy.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bug.h>
#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>

#include "demo_fix.h"

static int livepatch_cmdline_proc_show_audited(struct seq_file *m, void *v)
{
	/* The bug: strstr() finds the key, masked or not. */
	WARN_ONCE(strstr(demo_cmdline, "demo.password=") != NULL,
		  "livepatch_demo_fix4: a secret is about to be shown unmasked\n");
	return livepatch_cmdline_proc_show(m, v);
}

static struct klp_func funcs[] = {
	{
		.old_name = "cmdline_proc_show",
		.new_func = livepatch_cmdline_proc_show_audited,
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
MODULE_DESCRIPTION("livepatch demo fix 4: fix 2 plus an audit that warns on a masked secret");
