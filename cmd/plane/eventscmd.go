package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"plane"
	"plane/api"
)

// The client commands of the project's event log and its webhooks.

func runEvents(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("events", "Print the project's event log, one line per event: its id, time, type, backend, and status or user. "+
		"Without -f it prints the kept events (after --after) and exits; -f follows new events until interrupted, resuming if the connection drops.", stderr)
	parse := clientFlags(fs)
	follow := fs.Bool("f", false, "follow: print new events as they happen")
	after := fs.Int64("after", 0, "only the events after this id")
	asJSON := fs.Bool("json", false, "print each event's JSON, one per line")
	c, _, err := parse(args, false)
	if err != nil {
		return err
	}
	if *after < 0 {
		return usageError{fmt.Sprintf("--after must be an event id, 0 or more (got %d)", *after)}
	}
	events := c.EventsSoFar
	if *follow {
		events = c.Events
	}
	enc := json.NewEncoder(stdout)
	return events(ctx, *after, func(ev plane.ProjectEvent) error {
		if *asJSON {
			return enc.Encode(ev)
		}
		_, err := fmt.Fprintln(stdout, eventLine(ev))
		return err
	})
}

// eventLine is how plane events shows an event.
func eventLine(ev plane.ProjectEvent) string {
	var d struct {
		BackendID string                  `json:"backend_id"`
		Status    plane.BackendStatus     `json:"status"`
		Reason    plane.TerminationReason `json:"reason"`
		User      string                  `json:"user"`
		Users     int                     `json:"users"`
	}
	_ = json.Unmarshal(ev.Data, &d) // an event of a newer controller shows its data as is
	var detail string
	switch ev.Type {
	case plane.ProjectEventBackendStatus:
		detail = string(d.Status)
		if d.Reason != "" {
			detail += " (" + string(d.Reason) + ")"
		}
	case plane.ProjectEventUserJoined, plane.ProjectEventUserLeft:
		detail = fmt.Sprintf("%s (%d connected)", userText(d.User), d.Users)
	default:
		detail = string(ev.Data)
	}
	backend := d.BackendID
	if backend == "" {
		backend = "-"
	}
	return fmt.Sprintf("%-6d %s  %-19s  %-14s  %s", ev.ID, ev.Time.Local().Format("2006-01-02 15:04:05.000"), ev.Type, backend, detail)
}

// webhookCommands are plane webhooks' subcommands; without one it lists.
var webhookCommands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{
	"list":       runWebhooksList,
	"create":     runWebhookCreate,
	"delete":     runWebhookDelete,
	"deliveries": runWebhookDeliveries,
	"retry":      runWebhookRetry,
}

func runWebhooks(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		if run, ok := webhookCommands[args[0]]; ok {
			return run(ctx, args[1:], stdout, stderr)
		}
		if !strings.HasPrefix(args[0], "-") {
			names := make([]string, 0, len(webhookCommands))
			for n := range webhookCommands {
				names = append(names, n)
			}
			sort.Strings(names)
			return usageError{fmt.Sprintf("unknown webhooks command %q (want %s)", args[0], strings.Join(names, ", "))}
		}
	}
	return runWebhooksList(ctx, args, stdout, stderr)
}

// webhooksSynopsis heads plane webhooks --help.
const webhooksSynopsis = `List the project's webhooks, or manage them:
  plane webhooks [list]                          list them: id, URL, events, state
  plane webhooks create [--events a,b] URL       add one; prints its signing secret once
  plane webhooks delete ID                       delete one with its deliveries
  plane webhooks deliveries [--limit N] ID       its latest deliveries and their attempts
  plane webhooks retry ID DELIVERY               send a delivery again now`

func runWebhooksList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("webhooks", webhooksSynopsis, stderr)
	parse := clientFlags(fs)
	asJSON := fs.Bool("json", false, "print the API's JSON answer")
	c, _, err := parse(args, false)
	if err != nil {
		return err
	}
	ws, err := c.Webhooks(ctx)
	if err != nil {
		return err
	}
	return printList(stdout, *asJSON, api.Webhooks{Webhooks: ws}, "ID\tURL\tEVENTS\tSTATE\tCREATED", ws, func(w api.Webhook) string {
		return fmt.Sprintf("%d\t%s\t%s\t%s\t%s", w.ID, w.URL, eventsText(w.Events), webhookState(w), w.CreatedAt.Local().Format(time.DateTime))
	})
}

func eventsText(ts []plane.ProjectEventType) string {
	if len(ts) == 0 {
		return "all"
	}
	s := make([]string, len(ts))
	for i, t := range ts {
		s[i] = string(t)
	}
	return strings.Join(s, ",")
}

// webhookState says whether a webhook is answered, failing or disabled.
func webhookState(w api.Webhook) string {
	switch {
	case w.DisabledAt != nil:
		s := "disabled " + w.DisabledAt.Local().Format(time.DateTime)
		if w.DisabledReason != "" {
			s += ": " + w.DisabledReason
		}
		return s
	case w.FailingSince != nil:
		return "failing since " + w.FailingSince.Local().Format(time.DateTime)
	}
	return "ok"
}

// eventTypesFlag reads --events a,b: event types, checked by the server.
type eventTypesFlag []plane.ProjectEventType

func (e *eventTypesFlag) String() string { return "" }
func (e *eventTypesFlag) Set(v string) error {
	*e = nil
	for _, t := range strings.Split(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			*e = append(*e, plane.ProjectEventType(t))
		}
	}
	return nil
}

func runWebhookCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("webhooks create", "Add a webhook: plane webhooks create [--events a,b] URL. The controller POSTs the project's events to URL, "+
		"signed with a secret printed this once (Standard Webhooks). The URL is an argument: --url is the controller's.", stderr)
	parse := clientArgFlags(fs)
	var events eventTypesFlag
	fs.Var(&events, "events", "the event types it gets, comma-separated ("+eventsText(plane.ProjectEventTypes)+"); default: all")
	asJSON := fs.Bool("json", false, "print the API's JSON answer (with the secret)")
	c, pos, err := parse(args, "webhook URL")
	if err != nil {
		return err
	}
	w, err := c.CreateWebhook(ctx, pos[0], events)
	if err != nil {
		return err
	}
	if *asJSON {
		if err := printJSON(stdout, w); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(stdout, "webhook %d created: %s (events: %s)\nsecret: %s\n", w.ID, w.URL, eventsText(w.Events), w.Secret)
	}
	fmt.Fprintln(stderr, "Store the secret now: it verifies the signature of every delivery, and it is not shown again.")
	return nil
}

func runWebhookDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("webhooks delete", "Delete a webhook with its deliveries: plane webhooks delete ID.", stderr)
	parse := clientArgFlags(fs)
	c, pos, err := parse(args, "webhook ID")
	if err != nil {
		return err
	}
	id, err := parseID("the webhook ID", pos[0])
	if err != nil {
		return err
	}
	if err := c.DeleteWebhook(ctx, id); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "deleted webhook %d\n", id)
	return nil
}

func runWebhookDeliveries(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("webhooks deliveries", "Show a webhook's latest deliveries, newest first, with their last attempt: plane webhooks deliveries [--limit N] ID.", stderr)
	parse := clientArgFlags(fs)
	limit := fs.Int("limit", 0, "at most this many, 1 to 500; default: the controller's (50)")
	asJSON := fs.Bool("json", false, "print the API's JSON answer, with every attempt")
	c, pos, err := parse(args, "webhook ID")
	if err != nil {
		return err
	}
	id, err := parseID("the webhook ID", pos[0])
	if err != nil {
		return err
	}
	ds, err := c.Deliveries(ctx, id, *limit)
	if err != nil {
		return err
	}
	return printList(stdout, *asJSON, api.Deliveries{Deliveries: ds}, "ID\tEVENT\tTYPE\tSTATUS\tATTEMPTS\tLAST ATTEMPT\tCREATED", ds, func(d api.Delivery) string {
		return fmt.Sprintf("%d\t%d\t%s\t%s\t%d\t%s\t%s", d.ID, d.EventID, d.EventType, deliveryStatus(d), len(d.Attempts), lastAttempt(d), d.CreatedAt.Local().Format(time.DateTime))
	})
}

// deliveryStatus is a delivery's status, with its next try while pending.
func deliveryStatus(d api.Delivery) string {
	if d.Status == plane.DeliveryPending && d.NextAttemptAt != nil {
		return "pending, next " + d.NextAttemptAt.Local().Format(time.TimeOnly)
	}
	return string(d.Status)
}

// lastAttempt shows a delivery's last try: its answer's status or error.
func lastAttempt(d api.Delivery) string {
	if len(d.Attempts) == 0 {
		return "-"
	}
	a := d.Attempts[len(d.Attempts)-1]
	what := a.Error
	if a.StatusCode != 0 {
		what = fmt.Sprintf("HTTP %d", a.StatusCode)
	}
	return fmt.Sprintf("%s %s (%d ms)", a.Time.Local().Format(time.TimeOnly), what, a.DurationMS)
}

func runWebhookRetry(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("webhooks retry", "Send a delivery again now, with a new day of retries (a disabled webhook is enabled again): plane webhooks retry ID DELIVERY.", stderr)
	parse := clientArgFlags(fs)
	c, pos, err := parse(args, "webhook ID", "delivery ID")
	if err != nil {
		return err
	}
	id, err := parseID("the webhook ID", pos[0])
	if err != nil {
		return err
	}
	delivery, err := parseID("the delivery ID", pos[1])
	if err != nil {
		return err
	}
	d, err := c.RetryDelivery(ctx, id, delivery)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "delivery %d of webhook %d: %s\n", d.ID, id, deliveryStatus(d))
	return nil
}
