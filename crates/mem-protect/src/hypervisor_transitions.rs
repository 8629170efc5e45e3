//! Transitions between the host and the hypervisor: share, unshare, donate, give back.

use stage2::{Entry, Operation, PageState, TablePool};

use crate::{
    Component, HypervisorPageState, MemProtect, MemProtectError, OwnershipKind, PAGE_SIZE,
    PageOwnership, ProtectionEvent, ProtectionPlatform, host_map, hypervisor_annotation, needed,
    stage2_error,
};

impl<P: TablePool, F: ProtectionPlatform> MemProtect<'_, P, F> {
    /// Host → shared with the hypervisor, one page. The host keeps its access.
    pub fn host_share_hypervisor(&mut self, address: u64) -> Result<(), MemProtectError> {
        let range = self.layout.memory_range(address, 1)?;
        self.expect_host_state(&range, OwnershipKind::Host)?;
        let operation = match self.host.walk(address) {
            // Only software bits change: no break-before-make, the host never loses the page.
            Entry::Mapped { .. } => Operation::SetPageState(PageState::SharedOwned),
            Entry::Unmapped | Entry::Annotated(_) => host_map(address, PageState::SharedOwned),
        };
        self.host_tables_available(needed(&self.host, address, PAGE_SIZE, operation)?)?;
        // Commit.
        self.host
            .apply(address, PAGE_SIZE, operation, &mut self.platform)
            .map_err(stage2_error)?;
        self.hypervisor
            .set(range.clone(), HypervisorPageState::Borrowed);
        self.platform
            .observe(ProtectionEvent::OwnershipTransferred {
                range,
                to: Component::Hypervisor,
            });
        Ok(())
    }

    /// Shared with the hypervisor → host, one page.
    pub fn host_unshare_hypervisor(&mut self, address: u64) -> Result<(), MemProtectError> {
        let range = self.layout.memory_range(address, 1)?;
        self.expect_host_state(&range, OwnershipKind::SharedWithHypervisor)?;
        let operation = Operation::SetPageState(PageState::Owned);
        self.host_tables_available(needed(&self.host, address, PAGE_SIZE, operation)?)?;
        // Commit.
        self.hypervisor
            .set(range.clone(), HypervisorPageState::NoAccess);
        self.host
            .apply(address, PAGE_SIZE, operation, &mut self.platform)
            .map_err(stage2_error)?;
        self.platform
            .observe(ProtectionEvent::OwnershipTransferred {
                range,
                to: Component::Host,
            });
        Ok(())
    }

    /// Host → hypervisor, `pages` pages. The host loses access: erratum path.
    pub fn host_donate_hypervisor(
        &mut self,
        address: u64,
        pages: u64,
    ) -> Result<(), MemProtectError> {
        let range = self.layout.memory_range(address, pages)?;
        self.expect_host_state(&range, OwnershipKind::Host)?;
        let annotation = hypervisor_annotation();
        let size = range.end - range.start;
        self.host_tables_available(needed(
            &self.host,
            address,
            size,
            Operation::Annotate(annotation),
        )?)?;
        // Commit.
        #[cfg(mutant = "mem_protect_hyp_owns_before_call")]
        self.hypervisor
            .set(range.clone(), HypervisorPageState::Owned);
        if let Err(error) = self.revoke_host_access(range.clone(), annotation) {
            self.roll_back_to_host(range);
            return Err(error);
        }
        self.hypervisor
            .set(range.clone(), HypervisorPageState::Owned);
        self.platform
            .observe(ProtectionEvent::OwnershipTransferred {
                range,
                to: Component::Hypervisor,
            });
        Ok(())
    }

    /// Hypervisor → host, `pages` pages the hypervisor owns (not its own image).
    pub fn hypervisor_donate_host(
        &mut self,
        address: u64,
        pages: u64,
    ) -> Result<(), MemProtectError> {
        let range = self.layout.memory_range(address, pages)?;
        if let Some(address) = range
            .clone()
            .step_by(PAGE_SIZE as usize)
            .find(|page| self.layout.hypervisor.contains(page))
        {
            return Err(MemProtectError::UnexpectedState {
                address,
                expected: OwnershipKind::Hypervisor,
                found: PageOwnership::Hypervisor,
            });
        }
        self.expect_host_state(&range, OwnershipKind::Hypervisor)?;
        self.host_tables_available(needed(
            &self.host,
            address,
            range.end - range.start,
            Operation::Unmap,
        )?)?;
        // Commit (the table change first: the checks above make it infallible, and if it were not,
        // nothing would have changed).
        self.give_back_to_host(range.clone())?;
        self.platform.grant_device_access(range.clone());
        self.hypervisor
            .set(range.clone(), HypervisorPageState::NoAccess);
        self.platform
            .observe(ProtectionEvent::OwnershipTransferred {
                range,
                to: Component::Host,
            });
        Ok(())
    }
}
