// SPDX-License-Identifier: GPL-2.0
/*
 * A livepatch of livepatch_stall_target's stall_target_hold(). While the
 * target's worker sleeps in that function the kernel cannot switch it to the
 * new code, so the transition stays pending (transition = 1) until the
 * worker leaves it (hold = N).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/kernel.h>
#include <linux/livepatch.h>
#include <linux/module.h>

static void livepatch_stall_hold(void)
{
	pr_info("%s: patched, not holding\n", __func__);
}

static struct klp_func funcs[] = {
	{
		.old_name = "stall_target_hold",
		.new_func = livepatch_stall_hold,
	}, { }
};

static struct klp_object objs[] = {
	{
		.name = "livepatch_stall_target",
		.funcs = funcs,
	}, { }
};

static struct klp_patch patch = {
	.mod = THIS_MODULE,
	.objs = objs,
};

static int livepatch_stall_init(void)
{
	return klp_enable_patch(&patch);
}

static void livepatch_stall_exit(void)
{
}

module_init(livepatch_stall_init);
module_exit(livepatch_stall_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(livepatch, "Y");
MODULE_DESCRIPTION("livepatch test: a transition that waits for a sleeping task");
