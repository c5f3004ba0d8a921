package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"

	"github.com/jetsource/jetsource/contract"
)

// QueryError is an error reply of the orders-query service.
type QueryError struct {
	// Code is 400 (a bad request), 404 (no such order, or no such version
	// of it) or 500.
	Code    int
	Message string
}

func (e *QueryError) Error() string { return fmt.Sprintf("orders-query: %d: %s", e.Code, e.Message) }

// State asks the orders-query service for an order's state: now, as of a
// version, or as of a time.
func (c *Client) State(ctx context.Context, q contract.StateQuery) (contract.OrderState, error) {
	var s contract.OrderState
	return s, c.query(ctx, contract.QueryStateSubject, q.OrderID, q, &s)
}

// History asks the orders-query service for a page of an order's events;
// ask again after the last version while More is set.
func (c *Client) History(ctx context.Context, q contract.HistoryQuery) (contract.History, error) {
	var h contract.History
	return h, c.query(ctx, contract.QueryHistorySubject, q.OrderID, q, &h)
}

func (c *Client) query(ctx context.Context, subject, orderID string, q, reply any) error {
	if err := contract.ValidateID("orderId", orderID); err != nil {
		return err
	}
	body, err := json.Marshal(q)
	if err != nil {
		return fmt.Errorf("encode the query: %w", err)
	}
	m, err := c.nc.RequestWithContext(ctx, subject, body)
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%s: no %s service is running: %w", subject, contract.QueryService, err)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	if code := m.Header.Get(contract.QueryErrorCodeHeader); code != "" {
		n, _ := strconv.Atoi(code)
		return &QueryError{Code: n, Message: m.Header.Get(contract.QueryErrorHeader)}
	}
	if err := json.Unmarshal(m.Data, reply); err != nil {
		return fmt.Errorf("%s: decode the reply: %w", subject, err)
	}
	return nil
}
