package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/andromeda-runner/andromeda/api"
	"github.com/andromeda-runner/andromeda/contract"
	"github.com/andromeda-runner/andromeda/pgbridge"
	"github.com/andromeda-runner/andromeda/server"
)

// PostgreSQL notifications as events (events.postgres): the node runs a
// pgbridge.Bridge whose messages it publishes as the operator through the
// normal publish path, each delivery under its own JetStream message id,
// so a publish retried after a lost acknowledgement is stored once.

// PostgresChannel bridges one PostgreSQL notification channel to a topic:
// every notification on Channel becomes an event on Topic, published by
// the operator with publisher "postgres:CHANNEL", whose message is
// {"channel": CHANNEL, "payload": PAYLOAD, "pid": PID}: the payload as a
// JSON value when it is valid JSON, else as a JSON string; PID is the
// notifying backend's process id. The node listens from its start,
// reconnecting with backoff (100 ms doubling to 30 s, with jitter) when
// the server is unreachable, which is logged, counted in metrics and shown
// in /readyz without making the node unready. Notifications sent while
// the node is not listening are lost: Postgres keeps none for a
// disconnected listener.
type PostgresChannel struct {
	// DSN is the server, as a libpq URL
	// (postgres://user:password@host:5432/db?sslmode=require) or
	// keyword/value string (host=... user=... password=...). Required. Its
	// password is shown as xxxxx in logs, /readyz and metrics.
	DSN string `json:"dsn" yaml:"dsn"`
	// Channel is the channel listened on, 1 to 63 bytes without control
	// characters, matched exactly as pg_notify('Channel', ...) names it,
	// case included (an unquoted NOTIFY folds its channel to lower case).
	// Required.
	Channel string `json:"channel" yaml:"channel"`
	// Topic is the topic the notifications are published on, by the bus's
	// topic rule. Required.
	Topic string `json:"topic" yaml:"topic"`
}

// checkPostgres checks events.postgres, each error naming its entry and
// field.
func checkPostgres(chs []PostgresChannel) []error {
	var errs []error
	seen := map[[3]string]int{}
	for i, c := range chs {
		at := fmt.Sprintf("events.postgres[%d]", i)
		if err := pgbridge.CheckDSN(c.DSN); err != nil {
			errs = append(errs, fmt.Errorf("%s.dsn: %w", at, err))
		}
		if err := pgbridge.CheckChannel(c.Channel); err != nil {
			errs = append(errs, fmt.Errorf("%s.channel: %w", at, err))
		}
		if err := contract.CheckTopic(c.Topic); err != nil {
			errs = append(errs, fmt.Errorf("%s.topic: %w", at, err))
		}
		key := [3]string{pgbridge.Redact(c.DSN), c.Channel, c.Topic}
		if j, ok := seen[key]; ok {
			errs = append(errs, fmt.Errorf("%s: the same dsn, channel and topic as events.postgres[%d]: every notification would be published twice", at, j))
		} else {
			seen[key] = i
		}
	}
	return errs
}

// startPostgres starts the bridges of events.postgres, if any, once the
// events stream exists; Close stops them before the events stream's loops.
// A server that cannot be reached is retried, so nothing here fails the
// start.
func (n *Node) startPostgres() {
	cfg := n.cfg.Events.Postgres
	if len(cfg) == 0 {
		return
	}
	chs := make([]pgbridge.Channel, len(cfg))
	for i, c := range cfg {
		chs[i] = pgbridge.Channel{DSN: c.DSN, Channel: c.Channel, Topic: c.Topic}
	}
	b, err := pgbridge.New(chs, n.publishPostgres, n.log)
	if err != nil { // Validate checked the same
		n.log.Error("events.postgres not started", logErr, err)
		return
	}
	b.Start()
	n.events.postgres = b
	n.undo = append(n.undo, b.Close)
	n.metrics.reg.MustRegister(pgCollector{b})
}

// publishPostgres is the bridge's PublishFunc: the operator publishes, the
// publisher naming the channel, msgID as the JetStream message id. A
// message the bus refuses for good (larger than events.max_message) is
// not retried. The events stream remembers ids for 2 minutes (its
// duplicate window); the bridge retries at most 30 s apart, so a delivery
// is stored twice only if the bus stored it, lost the acknowledgement and
// then refused every retry for more than 2 minutes.
func (n *Node) publishPostgres(ctx context.Context, topic string, message json.RawMessage, msgID string) error {
	var m struct {
		Channel string `json:"channel"`
	}
	json.Unmarshal(message, &m) // the bridge's own message
	_, err := n.publishID(ctx, true, operatorOwner, "postgres:"+m.Channel, topic, message, msgID)
	if errors.Is(err, server.ErrInvalid) || errors.Is(err, server.ErrForbidden) {
		return fmt.Errorf("%w: %v", pgbridge.ErrRejected, err)
	}
	return err
}

// postgresReadiness is every bridge's state for /readyz; nil without
// events.postgres.
func (n *Node) postgresReadiness() []api.PostgresBridge {
	if n.events == nil || n.events.postgres == nil {
		return nil
	}
	var out []api.PostgresBridge
	for _, s := range n.events.postgres.Status() {
		out = append(out, api.PostgresBridge{
			Channel: s.Channel, Topic: s.Topic, Server: s.Server, State: string(s.State), Since: s.Since,
			LastError: s.LastError, PublishError: s.PublishError,
			Reconnects: s.Reconnects, Received: s.Received, Published: s.Published, Rejected: s.Rejected, Pending: s.Pending,
		})
	}
	return out
}

// pgCollector exposes the bridges' status as metrics, read at each scrape.
type pgCollector struct{ b *pgbridge.Bridge }

var (
	pgLabels    = []string{"channel", "topic", "server"}
	pgConnected = prometheus.NewDesc("andromeda_pg_bridge_connected",
		"1 while the PostgreSQL bridge listens on its channel, 0 while it connects or reconnects.", pgLabels, nil)
	pgNotifications = prometheus.NewDesc("andromeda_pg_bridge_notifications_total",
		"Notifications the PostgreSQL bridge received on its channel.", pgLabels, nil)
	pgPublished = prometheus.NewDesc("andromeda_pg_bridge_published_total",
		"Notifications the PostgreSQL bridge published as events.", pgLabels, nil)
	pgRejected = prometheus.NewDesc("andromeda_pg_bridge_rejected_total",
		"Notifications the bus refused for good (larger than events.max_message), not published.", pgLabels, nil)
	pgPending = prometheus.NewDesc("andromeda_pg_bridge_pending",
		"Notifications received and not yet published.", pgLabels, nil)
	pgReconnects = prometheus.NewDesc("andromeda_pg_bridge_reconnects_total",
		"Times the PostgreSQL bridge listened again after losing its connection.", pgLabels, nil)
)

func (c pgCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{pgConnected, pgNotifications, pgPublished, pgRejected, pgPending, pgReconnects} {
		ch <- d
	}
}

func (c pgCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.b.Status() {
		l := []string{s.Channel, s.Topic, s.Server}
		connected := 0.0
		if s.State == pgbridge.Listening {
			connected = 1
		}
		ch <- prometheus.MustNewConstMetric(pgConnected, prometheus.GaugeValue, connected, l...)
		ch <- prometheus.MustNewConstMetric(pgNotifications, prometheus.CounterValue, float64(s.Received), l...)
		ch <- prometheus.MustNewConstMetric(pgPublished, prometheus.CounterValue, float64(s.Published), l...)
		ch <- prometheus.MustNewConstMetric(pgRejected, prometheus.CounterValue, float64(s.Rejected), l...)
		ch <- prometheus.MustNewConstMetric(pgPending, prometheus.GaugeValue, float64(s.Pending), l...)
		ch <- prometheus.MustNewConstMetric(pgReconnects, prometheus.CounterValue, float64(s.Reconnects), l...)
	}
}
