/* list.h: an intrusive, circular, doubly-linked list.
 *
 * A list is an lv_list_t head (a sentinel) initialised with lv_list_init; an
 * element embeds an lv_list_t link and is found again with lv_list_entry.
 * Insertion and removal are O(1) and never allocate. A link that is not in
 * any list is all zero (as after calloc, or after lv_list_remove), so
 * lv_list_linked tells whether an element is queued.
 *
 * Ownership: the list owns nothing; elements belong to whoever allocated
 * them and must be removed before they are freed. */
#ifndef LV_CORE_LIST_H
#define LV_CORE_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct lv_list {
    struct lv_list *prev, *next;
} lv_list_t;

/* The element that embeds `node` as its field `member`. */
#define lv_list_entry(node, type, member) ((type *)((char *)(node) - offsetof(type, member)))

static inline void lv_list_init(lv_list_t *head)
{
    head->prev = head->next = head;
}

static inline bool lv_list_empty(const lv_list_t *head)
{
    return head->next == head;
}

/* True if the element's link is in a list. */
static inline bool lv_list_linked(const lv_list_t *node)
{
    return node->next != NULL;
}

static inline void lv_list_insert_before(lv_list_t *pos, lv_list_t *node)
{
    node->prev = pos->prev;
    node->next = pos;
    pos->prev->next = node;
    pos->prev = node;
}

static inline void lv_list_push_back(lv_list_t *head, lv_list_t *node)
{
    lv_list_insert_before(head, node);
}

static inline void lv_list_push_front(lv_list_t *head, lv_list_t *node)
{
    lv_list_insert_before(head->next, node);
}

/* Unlinks the element; its link is zero afterwards. */
static inline void lv_list_remove(lv_list_t *node)
{
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node->next = NULL;
}

/* The first element's link, or NULL when the list is empty. */
static inline lv_list_t *lv_list_first(const lv_list_t *head)
{
    return head->next == head ? NULL : head->next;
}

#endif
